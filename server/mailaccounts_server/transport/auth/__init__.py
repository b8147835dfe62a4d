"""Caller authentication and authorisation: who is calling (mTLS, JWT) and what they may do."""

"""`make bench`: load generator, echo baseline and reports for the mailaccounts gRPC service.

Run with `python -m bench --help`. Nothing here is imported by the server or the tests.
"""

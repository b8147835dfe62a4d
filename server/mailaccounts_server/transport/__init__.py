"""Transport layer: the gRPC servicer (proto <-> domain), the guard that authenticates each
call and maps domain errors to status codes, and caller authentication (`auth`)."""

from mailaccounts_server.transport.interceptors import guard
from mailaccounts_server.transport.servicer import AccountServicer

__all__ = ["AccountServicer", "guard"]

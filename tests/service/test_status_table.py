"""The server's exception -> status table and the client's status -> exception table are total."""

from __future__ import annotations

import inspect
from types import ModuleType

import grpc
import pytest
from deconv import codec, wire
from deconv_client import errors as client_errors
from deconv_server import errors as server_errors
from deconv_server.status import GENERIC_INTERNAL_MESSAGE, STATUS_TABLE, status_for, trailers_for

from deconv_core import errors as core_errors


def _exception_classes(module: ModuleType) -> list[type[BaseException]]:
    return [
        obj
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, BaseException) and obj.__module__ == module.__name__
    ]


@pytest.mark.parametrize("module", [core_errors, codec, server_errors], ids=lambda m: m.__name__)
def test_every_exception_class_has_its_own_entry(module: ModuleType) -> None:
    classes = _exception_classes(module)
    assert classes, f"no exception classes found in {module.__name__}"
    missing = [c.__name__ for c in classes if c not in STATUS_TABLE]
    assert not missing, f"add these to deconv_server.status.STATUS_TABLE: {missing}"


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (core_errors.InvalidArgumentError("conv: stride=0 must be >= 1"), "INVALID_ARGUMENT"),
        (core_errors.UnsupportedDtypeError("conv: input dtype int8"), "INVALID_ARGUMENT"),
        (codec.InvalidTensorError("input: bad"), "INVALID_ARGUMENT"),
        (codec.TensorLimitError("input: big"), "RESOURCE_EXHAUSTED"),
        (server_errors.RequestError("missing"), "INVALID_ARGUMENT"),
        (server_errors.RequestLimitError("result big"), "RESOURCE_EXHAUSTED"),
        (server_errors.BusyError("busy"), "UNAVAILABLE"),
        (server_errors.DeadlineError("late"), "DEADLINE_EXCEEDED"),
        (server_errors.ResultTooLargeError("use the chunked RPC"), "RESOURCE_EXHAUSTED"),
        (server_errors.CancelledError("left"), "CANCELLED"),
    ],
)
def test_codes_and_messages(exc: Exception, code: str) -> None:
    got_code, message = status_for(exc)
    assert got_code.name == code
    assert message == str(exc)


def test_only_a_result_too_large_for_one_message_asks_for_the_chunked_rpc() -> None:
    retry = ((wire.RETRY_CHUNKED_KEY, wire.RETRY_CHUNKED_VALUE),)
    assert trailers_for(server_errors.ResultTooLargeError("big")) == retry
    for exc in (server_errors.RequestLimitError("flops"), codec.TensorLimitError("elements")):
        assert trailers_for(exc) == ()


def test_subclasses_inherit_their_parents_code() -> None:
    class Special(core_errors.InvalidArgumentError):
        pass

    assert status_for(Special("x"))[0] is grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("exc", [RuntimeError("secret"), KeyError("k"), ValueError("v")])
def test_unknown_exceptions_are_internal_and_generic(exc: Exception) -> None:
    code, message = status_for(exc)
    assert code is grpc.StatusCode.INTERNAL
    assert message == GENERIC_INTERNAL_MESSAGE


def test_memory_error_is_resource_exhausted_without_internals() -> None:
    code, message = status_for(MemoryError("Unable to allocate 3 TiB at 0xdeadbeef"))
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "0xdeadbeef" not in message


def test_client_maps_every_status_code() -> None:
    codes = set(grpc.StatusCode) - {grpc.StatusCode.OK}
    assert set(client_errors.STATUS_ERRORS) == codes
    for code, cls in client_errors.STATUS_ERRORS.items():
        assert issubclass(cls, client_errors.DeconvClientError)
        assert cls.code is code
    assert len(set(client_errors.STATUS_ERRORS.values())) == len(codes)


def test_client_error_builtin_bases() -> None:
    assert issubclass(client_errors.InvalidArgumentError, ValueError)
    assert issubclass(client_errors.DeadlineExceededError, TimeoutError)
    assert issubclass(client_errors.UnavailableError, ConnectionError)


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str | None) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str | None:
        return self._details


@pytest.mark.parametrize("code", sorted(set(grpc.StatusCode) - {grpc.StatusCode.OK}, key=str))
def test_from_rpc_error_carries_message_code_and_cause(code: grpc.StatusCode) -> None:
    rpc = _FakeRpcError(code, f"server says {code.name}")
    with pytest.raises(client_errors.DeconvClientError) as info:
        raise client_errors.from_rpc_error(rpc) from rpc
    err = info.value
    assert type(err) is client_errors.STATUS_ERRORS[code]
    assert err.code is code and str(err) == f"server says {code.name}"
    assert err.__cause__ is rpc

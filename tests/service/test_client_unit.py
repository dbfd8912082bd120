"""Client pieces that need no server: signatures, channel options, request encoding."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
from deconv.v1 import deconv_pb2 as pb
from deconv_client import AsyncClient, Client, InvalidArgumentError, _requests, _service
from deconv_client._channel import channel_options, default_load_balancing
from grpc_health.v1 import health_pb2

import deconv_core


def _params(fn: object) -> list[tuple[str, object, object]]:
    sig = inspect.signature(fn)  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in sig.parameters.values() if p.name != "self"]


@pytest.mark.parametrize("cls", [Client, AsyncClient])
@pytest.mark.parametrize("op", ["conv", "conv_transpose"])
def test_signatures_equal_the_core(cls: type, op: str) -> None:
    """Names, kinds (positional / keyword-only) and defaults match deconv_core exactly."""
    assert _params(getattr(cls, op)) == _params(getattr(deconv_core, op))


@pytest.mark.parametrize(
    ("target", "policy"),
    [
        ("127.0.0.1:50051", "pick_first"),
        ("localhost:50051", "pick_first"),
        ("dns:///deconv:50051", "round_robin"),
        ("ipv4:///127.0.0.1:5001,127.0.0.1:5002", "round_robin"),
        ("ipv4:127.0.0.1:5001,127.0.0.1:5002", "round_robin"),
        ("ipv4:///127.0.0.1:5001", "pick_first"),
        ("ipv6:///[::1]:5001,[::1]:5002", "round_robin"),
    ],
)
def test_default_load_balancing(target: str, policy: str) -> None:
    assert default_load_balancing(target) == policy


def test_service_config_has_round_robin_and_retry() -> None:
    opts = dict(
        channel_options(
            "dns:///deconv:50051",
            max_message_bytes=1 << 20,
            load_balancing=None,
            retry=True,
            options=(),
        )
    )
    config = json.loads(opts["grpc.service_config"])
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    (method,) = config["methodConfig"]
    assert method["name"] == [{"service": "deconv.v1.Deconv"}]
    policy = method["retryPolicy"]
    assert policy["maxAttempts"] == 5 and policy["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert opts["grpc.enable_retries"] == 1
    assert (
        opts["grpc.max_send_message_length"] == opts["grpc.max_receive_message_length"] == 1 << 20
    )
    assert opts["grpc.per_rpc_retry_buffer_size"] >= 1 << 20
    # keepalive pings no more often than the server permits (10 s)
    assert opts["grpc.keepalive_time_ms"] >= 10_000


def test_caller_options_win_and_bad_policy_is_rejected() -> None:
    opts = channel_options(
        "h:1",
        max_message_bytes=100,
        load_balancing="pick_first",
        retry=False,
        options=[("grpc.enable_retries", 1)],
    )
    assert dict(opts)["grpc.enable_retries"] == 1
    with pytest.raises(ValueError, match="load_balancing"):
        channel_options(
            "h:1", max_message_bytes=100, load_balancing="random", retry=True, options=()
        )


def _build(op: str = "conv_transpose", **params: object) -> pb.TransposedConvRequest:
    x = np.ones((1, 2, 4, 4), np.float32)
    w = np.ones((2, 2, 3, 3), np.float32)
    defaults = {
        "stride": 1,
        "padding": 0,
        "dilation": 1,
        "groups": 1,
        "data_format": "channels_first",
        "weight_format": "torch",
    }
    defaults.update(params)
    prepared = _requests.build_request(op, x, w, None, **defaults)  # type: ignore[arg-type]
    assert prepared.input_dtype == np.float32
    assert [name for name, _ in prepared.payloads] == ["input", "weight"]
    assert not prepared.request.input.data  # metadata only until a transport is chosen
    return prepared.unary_request()


def test_padding_forms_on_the_wire() -> None:
    assert list(_build(padding=1).explicit_padding.before) == [1]
    r = _build(padding=(1, 2))
    assert list(r.explicit_padding.before) == [1, 2] == list(r.explicit_padding.after)
    r = _build(padding=((1, 2), (3, 4)))
    assert list(r.explicit_padding.before) == [1, 3] and list(r.explicit_padding.after) == [2, 4]
    assert _build(padding="SAME").padding_mode == pb.PADDING_MODE_SAME
    assert _build(padding="same_lower").padding_mode == pb.PADDING_MODE_SAME_LOWER
    assert _build(padding="valid").padding_mode == pb.PADDING_MODE_VALID
    r = _build(stride=(2, 3), output_padding=1, output_shape=(9, 11))
    assert list(r.stride) == [2, 3] and list(r.output_padding) == [1]
    assert list(r.output_shape) == [9, 11]
    assert not r.HasField("bias")


@pytest.mark.parametrize(
    ("params", "pattern"),
    [
        ({"padding": "full"}, "padding='full' is not a padding mode"),
        ({"padding": ((1, 2),)}, r"one \(before, after\) pair per spatial axis \(2\)"),
        ({"stride": [2]}, "stride must be one int or 2 ints"),
        ({"stride": True}, "must be an integer, not a bool"),
        ({"groups": 0}, "groups=0 must be >= 1"),
        ({"dilation": 1.5}, "dilation=1.5 must be an integer"),
        ({"data_format": "NHWC"}, "data_format='NHWC' must be one of"),
        ({"weight_format": "onnx"}, "weight_format='onnx' must be one of"),
    ],
)
def test_arguments_the_wire_cannot_carry_are_rejected_locally(params: dict, pattern: str) -> None:
    with pytest.raises(InvalidArgumentError, match=pattern) as info:
        _build(**params)
    assert info.value.__cause__ is None


def test_unsupported_dtype_is_rejected_locally() -> None:
    with pytest.raises(InvalidArgumentError, match="input dtype int64 is not supported"):
        _requests.build_request(
            "conv",
            np.ones((1, 1, 3), np.int64),
            np.ones((1, 1, 1), np.float32),
            None,
            stride=1,
            padding=0,
            dilation=1,
            groups=1,
            data_format="channels_first",
            weight_format="torch",
        )


@pytest.mark.parametrize("service", ["", "deconv.v1.Deconv", "x" * 300])
def test_hand_encoded_health_messages_match_the_real_stubs(service: str) -> None:
    assert (
        _service.encode_health(service)
        == health_pb2.HealthCheckRequest(service=service).SerializeToString()
    )
    for status in (0, 1, 2, 3):
        raw = health_pb2.HealthCheckResponse(status=status).SerializeToString()
        assert _service.decode_health(raw) == health_pb2.HealthCheckResponse.ServingStatus.Name(
            status
        )


def test_transport_choice() -> None:
    """Small calls go unary; large inputs, large results or results of unknown size in chunks."""
    from deconv_client._base import UNARY_BYTES, unary_fits

    def prep(x_shape: tuple, w_shape: tuple, op: str = "conv_transpose", **kw: object) -> object:
        params = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}
        params.update(kw)
        return _requests.build_request(
            op,
            np.ones(x_shape, np.float32),
            np.ones(w_shape, np.float32),
            None,
            data_format="channels_first",
            weight_format="torch",
            **params,
        )

    small = prep((1, 2, 8, 8), (2, 2, 3, 3))
    assert small.output_nbytes == 4 * 2 * 10 * 10 and unary_fits(small, 1 << 28)
    big_in = prep((1, 4, 256, 256), (4, 4, 3, 3), op="conv")  # 1 MiB input
    assert big_in.nbytes > UNARY_BYTES and not unary_fits(big_in, 1 << 28)
    big_out = prep((1, 1, 64, 64), (1, 4, 4, 4), stride=4)  # 1 MiB result
    assert big_out.output_nbytes == 4 * 4 * 256 * 256 and not unary_fits(big_out, 1 << 28)
    dilated = prep((1, 1, 4, 4), (1, 4, 2, 2), dilation=300)  # 1.5 MB from 64-byte inputs
    assert dilated.output_nbytes == 4 * 4 * 304 * 304 and not unary_fits(dilated, 1 << 28)
    assert not unary_fits(small, 1024)  # over the message limit itself
    # a 400 KB result: unary under the default limit, chunked under a 256 KiB client limit (its
    # own gRPC would refuse the response)
    mid = prep((1, 1, 80, 80), (1, 1, 4, 4), stride=4)
    assert mid.output_nbytes == 4 * 320 * 320
    assert unary_fits(mid, 1 << 28) and not unary_fits(mid, 256 * 1024)
    ranks_off = prep((1, 2, 8, 8), (2, 2, 3))  # the server rejects it; the size is unknown
    # a result the client cannot size (the server will refuse the call): unary, one quick answer
    assert ranks_off.output_nbytes is None and unary_fits(ranks_off, 1 << 28)

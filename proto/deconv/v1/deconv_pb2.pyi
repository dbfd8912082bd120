from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_FLOAT64: _ClassVar[DType]
    DTYPE_FLOAT16: _ClassVar[DType]
    DTYPE_BFLOAT16: _ClassVar[DType]

class DataFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA_FORMAT_UNSPECIFIED: _ClassVar[DataFormat]
    DATA_FORMAT_CHANNELS_FIRST: _ClassVar[DataFormat]
    DATA_FORMAT_CHANNELS_LAST: _ClassVar[DataFormat]

class WeightFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WEIGHT_FORMAT_UNSPECIFIED: _ClassVar[WeightFormat]
    WEIGHT_FORMAT_TORCH: _ClassVar[WeightFormat]
    WEIGHT_FORMAT_TF: _ClassVar[WeightFormat]

class PaddingMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PADDING_MODE_UNSPECIFIED: _ClassVar[PaddingMode]
    PADDING_MODE_VALID: _ClassVar[PaddingMode]
    PADDING_MODE_SAME: _ClassVar[PaddingMode]
    PADDING_MODE_SAME_LOWER: _ClassVar[PaddingMode]

class PaddingFill(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PADDING_FILL_UNSPECIFIED: _ClassVar[PaddingFill]
    PADDING_FILL_ZEROS: _ClassVar[PaddingFill]
    PADDING_FILL_REFLECT: _ClassVar[PaddingFill]
    PADDING_FILL_REPLICATE: _ClassVar[PaddingFill]
    PADDING_FILL_CIRCULAR: _ClassVar[PaddingFill]

class Convention(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONVENTION_UNSPECIFIED: _ClassVar[Convention]
    CONVENTION_DEFAULT: _ClassVar[Convention]
    CONVENTION_KERAS: _ClassVar[Convention]
    CONVENTION_ONNX: _ClassVar[Convention]
    CONVENTION_ONNXRUNTIME: _ClassVar[Convention]

class Gradient(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRADIENT_UNSPECIFIED: _ClassVar[Gradient]
    GRADIENT_INPUT: _ClassVar[Gradient]
    GRADIENT_WEIGHT: _ClassVar[Gradient]
    GRADIENT_BIAS: _ClassVar[Gradient]
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT32: DType
DTYPE_FLOAT64: DType
DTYPE_FLOAT16: DType
DTYPE_BFLOAT16: DType
DATA_FORMAT_UNSPECIFIED: DataFormat
DATA_FORMAT_CHANNELS_FIRST: DataFormat
DATA_FORMAT_CHANNELS_LAST: DataFormat
WEIGHT_FORMAT_UNSPECIFIED: WeightFormat
WEIGHT_FORMAT_TORCH: WeightFormat
WEIGHT_FORMAT_TF: WeightFormat
PADDING_MODE_UNSPECIFIED: PaddingMode
PADDING_MODE_VALID: PaddingMode
PADDING_MODE_SAME: PaddingMode
PADDING_MODE_SAME_LOWER: PaddingMode
PADDING_FILL_UNSPECIFIED: PaddingFill
PADDING_FILL_ZEROS: PaddingFill
PADDING_FILL_REFLECT: PaddingFill
PADDING_FILL_REPLICATE: PaddingFill
PADDING_FILL_CIRCULAR: PaddingFill
CONVENTION_UNSPECIFIED: Convention
CONVENTION_DEFAULT: Convention
CONVENTION_KERAS: Convention
CONVENTION_ONNX: Convention
CONVENTION_ONNXRUNTIME: Convention
GRADIENT_UNSPECIFIED: Gradient
GRADIENT_INPUT: Gradient
GRADIENT_WEIGHT: Gradient
GRADIENT_BIAS: Gradient

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data", "shared_memory")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHARED_MEMORY_FIELD_NUMBER: _ClassVar[int]
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    shared_memory: SharedMemoryRef
    def __init__(self, dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ..., shared_memory: _Optional[_Union[SharedMemoryRef, _Mapping]] = ...) -> None: ...

class SharedMemoryRef(_message.Message):
    __slots__ = ("region", "offset", "byte_size")
    REGION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    BYTE_SIZE_FIELD_NUMBER: _ClassVar[int]
    region: str
    offset: int
    byte_size: int
    def __init__(self, region: _Optional[str] = ..., offset: _Optional[int] = ..., byte_size: _Optional[int] = ...) -> None: ...

class ExplicitPadding(_message.Message):
    __slots__ = ("before", "after")
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    before: _containers.RepeatedScalarFieldContainer[int]
    after: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, before: _Optional[_Iterable[int]] = ..., after: _Optional[_Iterable[int]] = ...) -> None: ...

class ConvRequest(_message.Message):
    __slots__ = ("input", "weight", "bias", "stride", "dilation", "groups", "data_format", "weight_format", "padding_mode", "explicit_padding", "padding_fill", "weight_digest", "output_shared_memory")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    BIAS_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    DILATION_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    DATA_FORMAT_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    PADDING_MODE_FIELD_NUMBER: _ClassVar[int]
    EXPLICIT_PADDING_FIELD_NUMBER: _ClassVar[int]
    PADDING_FILL_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SHARED_MEMORY_FIELD_NUMBER: _ClassVar[int]
    input: Tensor
    weight: Tensor
    bias: Tensor
    stride: _containers.RepeatedScalarFieldContainer[int]
    dilation: _containers.RepeatedScalarFieldContainer[int]
    groups: int
    data_format: DataFormat
    weight_format: WeightFormat
    padding_mode: PaddingMode
    explicit_padding: ExplicitPadding
    padding_fill: PaddingFill
    weight_digest: bytes
    output_shared_memory: SharedMemoryRef
    def __init__(self, input: _Optional[_Union[Tensor, _Mapping]] = ..., weight: _Optional[_Union[Tensor, _Mapping]] = ..., bias: _Optional[_Union[Tensor, _Mapping]] = ..., stride: _Optional[_Iterable[int]] = ..., dilation: _Optional[_Iterable[int]] = ..., groups: _Optional[int] = ..., data_format: _Optional[_Union[DataFormat, str]] = ..., weight_format: _Optional[_Union[WeightFormat, str]] = ..., padding_mode: _Optional[_Union[PaddingMode, str]] = ..., explicit_padding: _Optional[_Union[ExplicitPadding, _Mapping]] = ..., padding_fill: _Optional[_Union[PaddingFill, str]] = ..., weight_digest: _Optional[bytes] = ..., output_shared_memory: _Optional[_Union[SharedMemoryRef, _Mapping]] = ...) -> None: ...

class TransposedConvRequest(_message.Message):
    __slots__ = ("input", "weight", "bias", "stride", "dilation", "groups", "data_format", "weight_format", "padding_mode", "explicit_padding", "output_padding", "output_shape", "convention", "weight_digest", "output_shared_memory")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    BIAS_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    DILATION_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    DATA_FORMAT_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    PADDING_MODE_FIELD_NUMBER: _ClassVar[int]
    EXPLICIT_PADDING_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PADDING_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    CONVENTION_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SHARED_MEMORY_FIELD_NUMBER: _ClassVar[int]
    input: Tensor
    weight: Tensor
    bias: Tensor
    stride: _containers.RepeatedScalarFieldContainer[int]
    dilation: _containers.RepeatedScalarFieldContainer[int]
    groups: int
    data_format: DataFormat
    weight_format: WeightFormat
    padding_mode: PaddingMode
    explicit_padding: ExplicitPadding
    output_padding: _containers.RepeatedScalarFieldContainer[int]
    output_shape: _containers.RepeatedScalarFieldContainer[int]
    convention: Convention
    weight_digest: bytes
    output_shared_memory: SharedMemoryRef
    def __init__(self, input: _Optional[_Union[Tensor, _Mapping]] = ..., weight: _Optional[_Union[Tensor, _Mapping]] = ..., bias: _Optional[_Union[Tensor, _Mapping]] = ..., stride: _Optional[_Iterable[int]] = ..., dilation: _Optional[_Iterable[int]] = ..., groups: _Optional[int] = ..., data_format: _Optional[_Union[DataFormat, str]] = ..., weight_format: _Optional[_Union[WeightFormat, str]] = ..., padding_mode: _Optional[_Union[PaddingMode, str]] = ..., explicit_padding: _Optional[_Union[ExplicitPadding, _Mapping]] = ..., output_padding: _Optional[_Iterable[int]] = ..., output_shape: _Optional[_Iterable[int]] = ..., convention: _Optional[_Union[Convention, str]] = ..., weight_digest: _Optional[bytes] = ..., output_shared_memory: _Optional[_Union[SharedMemoryRef, _Mapping]] = ...) -> None: ...

class ConvResponse(_message.Message):
    __slots__ = ("output",)
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    output: Tensor
    def __init__(self, output: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_message_bytes", "max_tensor_elements", "max_output_elements", "workers", "max_flops_per_request", "max_inflight_bytes", "max_workspace_bytes", "weight_cache_bytes", "max_shared_memory_regions", "max_shared_memory_regions_per_owner", "shared_memory_lease_seconds")
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_TENSOR_ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    MAX_FLOPS_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MAX_INFLIGHT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_WORKSPACE_BYTES_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_CACHE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_SHARED_MEMORY_REGIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_SHARED_MEMORY_REGIONS_PER_OWNER_FIELD_NUMBER: _ClassVar[int]
    SHARED_MEMORY_LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    max_message_bytes: int
    max_tensor_elements: int
    max_output_elements: int
    workers: int
    max_flops_per_request: int
    max_inflight_bytes: int
    max_workspace_bytes: int
    weight_cache_bytes: int
    max_shared_memory_regions: int
    max_shared_memory_regions_per_owner: int
    shared_memory_lease_seconds: float
    def __init__(self, max_message_bytes: _Optional[int] = ..., max_tensor_elements: _Optional[int] = ..., max_output_elements: _Optional[int] = ..., workers: _Optional[int] = ..., max_flops_per_request: _Optional[int] = ..., max_inflight_bytes: _Optional[int] = ..., max_workspace_bytes: _Optional[int] = ..., weight_cache_bytes: _Optional[int] = ..., max_shared_memory_regions: _Optional[int] = ..., max_shared_memory_regions_per_owner: _Optional[int] = ..., shared_memory_lease_seconds: _Optional[float] = ...) -> None: ...

class GetServerInfoResponse(_message.Message):
    __slots__ = ("version", "dtypes", "ranks", "limits", "numba_version", "threading_layer", "threads", "runtime", "instance_id", "requests_served", "requests_failed", "warm", "shared_memory_regions")
    class RuntimeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DTYPES_FIELD_NUMBER: _ClassVar[int]
    RANKS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    NUMBA_VERSION_FIELD_NUMBER: _ClassVar[int]
    THREADING_LAYER_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_SERVED_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FAILED_FIELD_NUMBER: _ClassVar[int]
    WARM_FIELD_NUMBER: _ClassVar[int]
    SHARED_MEMORY_REGIONS_FIELD_NUMBER: _ClassVar[int]
    version: str
    dtypes: _containers.RepeatedScalarFieldContainer[DType]
    ranks: _containers.RepeatedScalarFieldContainer[int]
    limits: Limits
    numba_version: str
    threading_layer: str
    threads: int
    runtime: _containers.ScalarMap[str, str]
    instance_id: str
    requests_served: int
    requests_failed: int
    warm: bool
    shared_memory_regions: int
    def __init__(self, version: _Optional[str] = ..., dtypes: _Optional[_Iterable[_Union[DType, str]]] = ..., ranks: _Optional[_Iterable[int]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., numba_version: _Optional[str] = ..., threading_layer: _Optional[str] = ..., threads: _Optional[int] = ..., runtime: _Optional[_Mapping[str, str]] = ..., instance_id: _Optional[str] = ..., requests_served: _Optional[int] = ..., requests_failed: _Optional[int] = ..., warm: _Optional[bool] = ..., shared_memory_regions: _Optional[int] = ...) -> None: ...

class ConvRequestChunk(_message.Message):
    __slots__ = ("request", "data", "response_chunk_bytes", "weight_pending")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_PENDING_FIELD_NUMBER: _ClassVar[int]
    request: ConvRequest
    data: bytes
    response_chunk_bytes: int
    weight_pending: bool
    def __init__(self, request: _Optional[_Union[ConvRequest, _Mapping]] = ..., data: _Optional[bytes] = ..., response_chunk_bytes: _Optional[int] = ..., weight_pending: _Optional[bool] = ...) -> None: ...

class TransposedConvRequestChunk(_message.Message):
    __slots__ = ("request", "data", "response_chunk_bytes", "weight_pending")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_PENDING_FIELD_NUMBER: _ClassVar[int]
    request: TransposedConvRequest
    data: bytes
    response_chunk_bytes: int
    weight_pending: bool
    def __init__(self, request: _Optional[_Union[TransposedConvRequest, _Mapping]] = ..., data: _Optional[bytes] = ..., response_chunk_bytes: _Optional[int] = ..., weight_pending: _Optional[bool] = ...) -> None: ...

class TensorChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: Tensor
    data: bytes
    def __init__(self, header: _Optional[_Union[Tensor, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ConvBackwardRequest(_message.Message):
    __slots__ = ("forward", "grad_output", "need")
    FORWARD_FIELD_NUMBER: _ClassVar[int]
    GRAD_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    NEED_FIELD_NUMBER: _ClassVar[int]
    forward: ConvRequest
    grad_output: Tensor
    need: _containers.RepeatedScalarFieldContainer[Gradient]
    def __init__(self, forward: _Optional[_Union[ConvRequest, _Mapping]] = ..., grad_output: _Optional[_Union[Tensor, _Mapping]] = ..., need: _Optional[_Iterable[_Union[Gradient, str]]] = ...) -> None: ...

class TransposedConvBackwardRequest(_message.Message):
    __slots__ = ("forward", "grad_output", "need")
    FORWARD_FIELD_NUMBER: _ClassVar[int]
    GRAD_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    NEED_FIELD_NUMBER: _ClassVar[int]
    forward: TransposedConvRequest
    grad_output: Tensor
    need: _containers.RepeatedScalarFieldContainer[Gradient]
    def __init__(self, forward: _Optional[_Union[TransposedConvRequest, _Mapping]] = ..., grad_output: _Optional[_Union[Tensor, _Mapping]] = ..., need: _Optional[_Iterable[_Union[Gradient, str]]] = ...) -> None: ...

class BackwardResponse(_message.Message):
    __slots__ = ("grad_input", "grad_weight", "grad_bias")
    GRAD_INPUT_FIELD_NUMBER: _ClassVar[int]
    GRAD_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    GRAD_BIAS_FIELD_NUMBER: _ClassVar[int]
    grad_input: Tensor
    grad_weight: Tensor
    grad_bias: Tensor
    def __init__(self, grad_input: _Optional[_Union[Tensor, _Mapping]] = ..., grad_weight: _Optional[_Union[Tensor, _Mapping]] = ..., grad_bias: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class DeconvolveRequest(_message.Message):
    __slots__ = ("conv", "conv_transpose", "observed", "damping", "tol", "max_iter")
    CONV_FIELD_NUMBER: _ClassVar[int]
    CONV_TRANSPOSE_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    DAMPING_FIELD_NUMBER: _ClassVar[int]
    TOL_FIELD_NUMBER: _ClassVar[int]
    MAX_ITER_FIELD_NUMBER: _ClassVar[int]
    conv: ConvRequest
    conv_transpose: TransposedConvRequest
    observed: Tensor
    damping: float
    tol: float
    max_iter: int
    def __init__(self, conv: _Optional[_Union[ConvRequest, _Mapping]] = ..., conv_transpose: _Optional[_Union[TransposedConvRequest, _Mapping]] = ..., observed: _Optional[_Union[Tensor, _Mapping]] = ..., damping: _Optional[float] = ..., tol: _Optional[float] = ..., max_iter: _Optional[int] = ...) -> None: ...

class DeconvolveResponse(_message.Message):
    __slots__ = ("x", "residual_norm", "iterations", "converged", "residual_history", "stop_reason")
    X_FIELD_NUMBER: _ClassVar[int]
    RESIDUAL_NORM_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    CONVERGED_FIELD_NUMBER: _ClassVar[int]
    RESIDUAL_HISTORY_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    x: Tensor
    residual_norm: float
    iterations: int
    converged: bool
    residual_history: _containers.RepeatedScalarFieldContainer[float]
    stop_reason: str
    def __init__(self, x: _Optional[_Union[Tensor, _Mapping]] = ..., residual_norm: _Optional[float] = ..., iterations: _Optional[int] = ..., converged: _Optional[bool] = ..., residual_history: _Optional[_Iterable[float]] = ..., stop_reason: _Optional[str] = ...) -> None: ...

class DeconvolveUpdate(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: DeconvolveProgress
    result: DeconvolveResponse
    def __init__(self, progress: _Optional[_Union[DeconvolveProgress, _Mapping]] = ..., result: _Optional[_Union[DeconvolveResponse, _Mapping]] = ...) -> None: ...

class DeconvolveProgress(_message.Message):
    __slots__ = ("iteration", "residual_norm")
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    RESIDUAL_NORM_FIELD_NUMBER: _ClassVar[int]
    iteration: int
    residual_norm: float
    def __init__(self, iteration: _Optional[int] = ..., residual_norm: _Optional[float] = ...) -> None: ...

class RegisterSharedMemoryRequest(_message.Message):
    __slots__ = ("name", "key", "offset", "byte_size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    BYTE_SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    key: str
    offset: int
    byte_size: int
    def __init__(self, name: _Optional[str] = ..., key: _Optional[str] = ..., offset: _Optional[int] = ..., byte_size: _Optional[int] = ...) -> None: ...

class SharedMemoryRegion(_message.Message):
    __slots__ = ("name", "key", "offset", "byte_size", "writable", "lease_seconds", "expires_in_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    BYTE_SIZE_FIELD_NUMBER: _ClassVar[int]
    WRITABLE_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    key: str
    offset: int
    byte_size: int
    writable: bool
    lease_seconds: float
    expires_in_seconds: float
    def __init__(self, name: _Optional[str] = ..., key: _Optional[str] = ..., offset: _Optional[int] = ..., byte_size: _Optional[int] = ..., writable: _Optional[bool] = ..., lease_seconds: _Optional[float] = ..., expires_in_seconds: _Optional[float] = ...) -> None: ...

class UnregisterSharedMemoryRequest(_message.Message):
    __slots__ = ("name", "all")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    name: str
    all: bool
    def __init__(self, name: _Optional[str] = ..., all: _Optional[bool] = ...) -> None: ...

class UnregisterSharedMemoryResponse(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class SharedMemoryStatusRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class SharedMemoryStatusResponse(_message.Message):
    __slots__ = ("regions",)
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    regions: _containers.RepeatedCompositeFieldContainer[SharedMemoryRegion]
    def __init__(self, regions: _Optional[_Iterable[_Union[SharedMemoryRegion, _Mapping]]] = ...) -> None: ...

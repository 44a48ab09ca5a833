"""rediscache: an embedding hub on Redis.

Store embeddings as Redis hashes indexed by RediSearch vector indexes, fetch them fast,
find nearest neighbours with metadata filters, and run the embedded local Redis server.

    >>> import rediscache
    >>> hub = rediscache.connect()                    # embedded server, started on demand
    >>> items = hub.create_space("items", 384, fields={"genre": "tag"})
    >>> items.put_many(keys, vectors, metadata)
    >>> items.search(query_vector, k=10, filter={"genre": "drama"})
    >>> v = items.snapshot("before-retrain")        # O(1); rollback(v) is a pointer switch
    >>> rediscache.import_file(items, "vectors.npy", meta="meta.jsonl")
"""

from .asyncio import (
    AsyncHub,
    AsyncPartitionedSpace,
    AsyncSpace,
    AsyncStage,
    AsyncVersionView,
    connect_async,
)
from .config import GarbageInfo, GenerationInfo
from .diff import Diff, Drift
from .durability import Durability
from .errors import (
    AuthenticationFailedError,
    ConnectionFailedError,
    CorruptDataError,
    DurabilityError,
    EmbeddedServerError,
    FailoverTimeoutError,
    IndexBuildingError,
    InvalidInputError,
    KeyNotFoundError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    PortInUseError,
    ReadOnlyError,
    RedisBinaryNotFoundError,
    RediscacheError,
    ReshardingError,
    SchemaMismatchError,
    SearchModuleMissingError,
    ServerBusyError,
    ServerError,
    ServerLoadingError,
    ServerTimeoutError,
    SpaceNotFoundError,
    StageNotFoundError,
    StaleStateError,
    VersionNotFoundError,
)
from .hotcache import HotCache, HotCacheStats
from .hub import Hub, ServerStats, connect, connect_as
from .metrics import OpStats
from .operations import Averaged
from .partitioned import PartitionedSpace, PartitionedStage, PartitionedVersionView
from .query import And, Filter, Not, Num, Or, Tag, Text
from .server import ServerConfig, ServerInfo, ServerStatus
from .space import (
    Hit,
    Record,
    Space,
    SpaceConfig,
    SpaceInfo,
    Stage,
    StageInfo,
    VectorsUpdated,
    VersionView,
)
from .transfer import ExportReport, ImportReport, Rejected, export_file, import_file
from .versions import LIVE, Version

__version__ = "0.1.0"

__all__ = [
    "LIVE",
    "And",
    "AsyncHub",
    "AsyncPartitionedSpace",
    "AsyncSpace",
    "AsyncStage",
    "AsyncVersionView",
    "AuthenticationFailedError",
    "Averaged",
    "ConnectionFailedError",
    "CorruptDataError",
    "Diff",
    "Drift",
    "Durability",
    "DurabilityError",
    "EmbeddedServerError",
    "ExportReport",
    "FailoverTimeoutError",
    "Filter",
    "GarbageInfo",
    "GenerationInfo",
    "Hit",
    "HotCache",
    "HotCacheStats",
    "Hub",
    "ImportReport",
    "IndexBuildingError",
    "InvalidInputError",
    "KeyNotFoundError",
    "Not",
    "NotFoundError",
    "Num",
    "OpStats",
    "Or",
    "OutcomeUnknownError",
    "PartitionedSpace",
    "PartitionedStage",
    "PartitionedVersionView",
    "PermissionDeniedError",
    "PortInUseError",
    "ReadOnlyError",
    "Record",
    "RedisBinaryNotFoundError",
    "RediscacheError",
    "Rejected",
    "ReshardingError",
    "SchemaMismatchError",
    "SearchModuleMissingError",
    "ServerBusyError",
    "ServerConfig",
    "ServerError",
    "ServerInfo",
    "ServerLoadingError",
    "ServerStats",
    "ServerStatus",
    "ServerTimeoutError",
    "Space",
    "SpaceConfig",
    "SpaceInfo",
    "SpaceNotFoundError",
    "Stage",
    "StageInfo",
    "StageNotFoundError",
    "StaleStateError",
    "Tag",
    "Text",
    "VectorsUpdated",
    "Version",
    "VersionNotFoundError",
    "VersionView",
    "__version__",
    "connect",
    "connect_as",
    "connect_async",
    "export_file",
    "import_file",
]

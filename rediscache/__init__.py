"""rediscache: an embedding hub on Redis.

Store embeddings as Redis hashes indexed by RediSearch vector indexes, fetch them fast,
find nearest neighbours with metadata filters, and run the embedded local Redis server.

    >>> import rediscache
    >>> hub = rediscache.connect()                    # embedded server, started on demand
    >>> items = hub.create_space("items", 384, fields={"genre": "tag"})
    >>> items.put_many(keys, vectors, metadata)
    >>> items.search(query_vector, k=10, filter={"genre": "drama"})
"""

from .errors import (
    ConnectionFailedError,
    CorruptDataError,
    EmbeddedServerError,
    InvalidInputError,
    KeyNotFoundError,
    NotFoundError,
    PortInUseError,
    RedisBinaryNotFoundError,
    RediscacheError,
    SchemaMismatchError,
    SearchModuleMissingError,
    ServerError,
    SpaceNotFoundError,
)
from .hub import Hub, connect
from .operations import Averaged
from .query import And, Filter, Not, Num, Or, Tag, Text
from .server import ServerConfig, ServerInfo, ServerStatus
from .space import Hit, Record, Space, SpaceConfig, SpaceInfo

__version__ = "0.1.0"

__all__ = [
    "And",
    "Averaged",
    "ConnectionFailedError",
    "CorruptDataError",
    "EmbeddedServerError",
    "Filter",
    "Hit",
    "Hub",
    "InvalidInputError",
    "KeyNotFoundError",
    "Not",
    "NotFoundError",
    "Num",
    "Or",
    "PortInUseError",
    "Record",
    "RedisBinaryNotFoundError",
    "RediscacheError",
    "SchemaMismatchError",
    "SearchModuleMissingError",
    "ServerConfig",
    "ServerError",
    "ServerInfo",
    "ServerStatus",
    "Space",
    "SpaceConfig",
    "SpaceInfo",
    "SpaceNotFoundError",
    "Tag",
    "Text",
    "__version__",
    "connect",
]

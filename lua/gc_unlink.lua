-- gc_unlink.lua: delete one step of a garbage generation's listed documents, only while
-- the collector's lease is still its own (a space dropped meanwhile took the lease with
-- it, and a space created again under the name reuses the same key names: a collector
-- that went on would delete the new space's documents).
--
-- KEYS[1]     the space's collector lease
-- KEYS[2]     the set listing the generation's documents
-- KEYS[3..n]  the documents to delete (members of KEYS[2])
-- ARGV[1]     the collector's token
-- ARGV[2]     the lease's new time to live, ms
--
-- Reply: how many documents were deleted, or -1 when the lease is not this collector's
--        (nothing was deleted).
-- Errors: none.
-- Cost: O(number of documents), each UNLINK's own cost.
-- Atomic because: the check of the lease and the deletions must be one step, or a drop
--       and a re-creation of the space between them would lose the new space's documents.

if redis.call("GET", KEYS[1]) ~= ARGV[1] then
  return -1
end
local deleted = 0
if #KEYS > 2 then
  deleted = redis.call("UNLINK", unpack(KEYS, 3))
  redis.call("SREM", KEYS[2], unpack(KEYS, 3))
end
redis.call("PEXPIRE", KEYS[1], ARGV[2])
return deleted

-- copy_docs.lua: copy a batch of documents of one generation into another, for a copy of
-- the live generation (fork_begin.lua, stage.lua) whose lease this client holds, and count
-- what it copied in the space's config hash, where fork_commit.lua and stage_commit.lua
-- read the count. The count is the server's: a call sent again after its reply was lost,
-- or a document SCAN returned twice, copies nothing twice and counts nothing twice, and a
-- failover that loses a call's copies loses its count with them.
--
-- KEYS[1]          the space's config hash (field "copied": the documents copied so far)
-- KEYS[2]          the space's copy lease
-- KEYS[3..n+2]     the source documents (hashes)
-- KEYS[n+3..2n+2]  their copies' keys, in the same order
-- ARGV[1]          the token the copy was begun with
-- ARGV[2]          the lease in milliseconds, renewed by this call
-- ARGV[3]          "copy": COPY each document (an owner's copy); "fields": copy it field by
--                  field with its expiry (a role's: COPY takes a DB option that would let a
--                  role write into other databases, so roles are not given it;
--                  rediscache.access)
--
-- Reply: how many documents this call copied (a source that no longer exists, or a copy
--        that exists already, is skipped).
-- Errors: "RC_LOST" (the lease is not this token's: it expired and another client took
--         the copy over, or the copy ended; or the space was dropped, its config gone,
--         and a copy going on would leave documents its drop no longer finds; nothing is
--         written). A source that is not a
--         hash fails HGETALL (WRONGTYPE).
-- Cost: O(documents) with "copy", O(total fields of the documents) with "fields".
-- Atomic because: a document must not be copied half (its vector without its metadata),
--       nor with an expiry read before a write that changed it, and the count must move
--       with the copies it counts (a replica gets both or neither).

local cfg, lock = KEYS[1], KEYS[2]
if redis.call("GET", lock) ~= ARGV[1] or redis.call("HEXISTS", cfg, "state") == 0 then
  return redis.error_reply("RC_LOST")
end
local n = (#KEYS - 2) / 2
local copied = 0
for i = 3, n + 2 do
  local src, dst = KEYS[i], KEYS[n + i]
  if ARGV[3] == "copy" then
    copied = copied + redis.call("COPY", src, dst)
  elseif redis.call("EXISTS", dst) == 0 then
    local fields = redis.call("HGETALL", src)
    if #fields > 0 then
      redis.call("HSET", dst, unpack(fields))
      local ttl = redis.call("PTTL", src)
      if ttl > 0 then
        redis.call("PEXPIRE", dst, ttl)
      end
      copied = copied + 1
    end
  end
end
redis.call("PEXPIRE", lock, ARGV[2])
if copied > 0 then
  redis.call("HINCRBY", cfg, "copied", copied)
end
return copied

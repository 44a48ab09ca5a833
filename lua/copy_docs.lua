-- copy_docs.lua: copy documents of one generation into another, field by field, for a
-- user with a role on the space (COPY, which the server-side copy of an owner uses, takes
-- a DB option that would let a role write into other databases, so roles are not given
-- it; rediscache.access).
--
-- KEYS[1..n]     the source documents (hashes)
-- KEYS[n+1..2n]  their copies' keys, in the same order
-- ARGV[]         none
--
-- Reply: how many documents were copied (a source that no longer exists, or a copy that
--        exists already, is skipped: a repeated call copies nothing twice).
-- Errors: none of its own (a source that is not a hash fails HGETALL: WRONGTYPE).
-- Cost: O(total fields of the documents).
-- Atomic because: a document must not be copied half (its vector without its metadata),
--       nor with an expiry read before a write that changed it.

local n = #KEYS / 2
local copied = 0
for i = 1, n do
  local src, dst = KEYS[i], KEYS[n + i]
  if redis.call("EXISTS", dst) == 0 then
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
return copied

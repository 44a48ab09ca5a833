-- gc_drop_index.lua: drop one index of a garbage generation (its documents are kept:
-- they are deleted by gc_unlink.lua), only while the collector's lease is its own (a
-- space dropped and created again under the name reuses the index names).
--
-- KEYS[1]  the space's collector lease
-- KEYS[2]  the index (RediSearch declares index names as keys)
-- ARGV[1]  the collector's token
--
-- Reply: 1 when the index was dropped, 0 when there was none, -1 when the lease is not
--        this collector's (nothing was dropped).
-- Errors: any other error of FT.DROPINDEX.
-- Cost: FT.DROPINDEX's: O(1) without DD (about 0.1-0.5 ms measured).
-- Atomic because: the check of the lease and the drop must be one step, or a drop and a
--       re-creation of the space between them would lose the new space's index.

if redis.call("GET", KEYS[1]) ~= ARGV[1] then
  return -1
end
local ok, err = pcall(redis.call, "FT.DROPINDEX", KEYS[2])
if ok then
  return 1
end
local text = string.lower(tostring(err.err or err))
if string.find(text, "unknown index", 1, true) or string.find(text, "no such", 1, true) then
  return 0
end
return redis.error_reply(tostring(err.err or err))

-- gc_create_listing.lua: create the listing index of a garbage generation that has no
-- index (a role may not SCAN: the collector lists the generation's documents through it),
-- only while the collector's lease is its own (a drop deletes the lease with the config,
-- then the space's indexes: an index created after that would stay behind it).
--
-- KEYS[1]  the space's collector lease
-- KEYS[2]  the listing index (RediSearch declares index names as keys)
-- ARGV[1]  the collector's token
-- ARGV[2..] the FT.CREATE arguments after the index name
--
-- Reply: 1 when the index was created, 0 when it existed, -1 when the lease is not this
--        collector's (nothing was created).
-- Errors: any other error of FT.CREATE.
-- Cost: FT.CREATE's: O(1) here; the server indexes the documents in the background.
-- Atomic because: the check of the lease and the creation must be one step, or a drop
--       between them would leave the index behind the drop.

if redis.call("GET", KEYS[1]) ~= ARGV[1] then
  return -1
end
local ok, err = pcall(redis.call, "FT.CREATE", KEYS[2], unpack(ARGV, 2))
if ok then
  return 1
end
local text = string.lower(tostring(err.err or err))
if string.find(text, "already exists", 1, true) then
  return 0
end
return redis.error_reply(tostring(err.err or err))

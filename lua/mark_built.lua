-- mark_built.lua: record that a generation's index was found complete on this server run
-- (the config field built:<g> = the server's run id), only while the space exists: a
-- search of a space dropped meanwhile must not leave a config hash holding just the mark
-- (the space created again under the name would read it as a config of unknown layout).
--
-- KEYS[1]  the space's config hash
-- ARGV[1]  the field (built:<g>)
-- ARGV[2]  the server's run id
--
-- Reply: 1 when recorded, 0 when the space has no config (nothing written).
-- Errors: none.
-- Cost: O(1).
-- Atomic because: the check that the config exists and the write must be one step, or
--       a drop between them would let the write create a config hash of its own.

if redis.call("EXISTS", KEYS[1]) == 0 then
  return 0
end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
return 1

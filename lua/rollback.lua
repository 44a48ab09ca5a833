-- rollback.lua: make a version's generation the live one (a pointer and alias switch).
--
-- KEYS[1]  the space's config hash (state)
-- KEYS[2]  the space's versions hash
-- KEYS[3]  the alias searches of the live space use
-- KEYS[4]  the index of the version's generation
-- KEYS[5]  the space's garbage set (generations to delete)
-- ARGV[1]  version id
-- ARGV[2]  the generation the client found the version in (its index is KEYS[4])
--
-- Reply: { old live generation, 1 if it became garbage else 0, new state }
-- Errors: "RC_NOVERSION" (no such version), "RC_STALE" (the version moved to another
--         generation meanwhile: reload and retry), "RC_BUSY" (a copy of the live generation
--         is in progress: wait for it), "RC_NOSTATE". Nothing is written then.
-- Cost: O(number of versions) plus one FT.ALIASUPDATE (about 0.1 ms); independent of the
--       number of documents: nothing is copied or re-indexed.
-- Atomic because: get/get_many (through the state) and search (through the alias) must
--       switch in the same instant, so no reader ever mixes the old and the restored data.

local cfg, ver, alias, index, garbage = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local state = redis.call("HGET", cfg, "state")
local epoch, live, _, fork, origin = string.match(state or "", "^(%d+) (%d+) ([01]) (%S+)(.*)$")
if not epoch then return redis.error_reply("RC_NOSTATE") end
if fork ~= "-" then return redis.error_reply("RC_BUSY") end
local raw = redis.call("HGET", ver, ARGV[1])
if not raw then return redis.error_reply("RC_NOVERSION") end
local gen = tonumber(cjson.decode(raw).gen)
if gen ~= tonumber(ARGV[2]) then return redis.error_reply("RC_STALE") end
local old = tonumber(live)
local dropped = 0
if gen ~= old then
  redis.call("FT.ALIASUPDATE", alias, index)
  local kept = false
  for _, r in ipairs(redis.call("HVALS", ver)) do
    if tonumber(cjson.decode(r).gen) == old then kept = true break end
  end
  if not kept then
    redis.call("SADD", garbage, old)
    dropped = 1
  end
end
local new = (epoch + 1) .. " " .. gen .. " 1 -" .. origin
redis.call("HSET", cfg, "state", new)
return { old, dropped, new }

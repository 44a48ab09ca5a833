-- drop_version.lua: delete one version; its generation becomes garbage when nothing else
-- (the live space or another version) uses it.
--
-- KEYS[1]  the space's config hash (state)
-- KEYS[2]  the space's versions hash
-- KEYS[3]  the space's garbage set
-- ARGV[1]  version id
--
-- Reply: { generation that became garbage or 0, new state }
-- Errors: "RC_NOVERSION" (no such version), "RC_NOSTATE". Nothing is written then.
-- Cost: O(number of versions). The garbage generation's documents and index are deleted
--       afterwards by the client (Space._collect_garbage), in batches.
-- Atomic because: deciding that a generation is unused and marking it garbage must be one
--       step, or a concurrent snapshot or rollback could start using it in between.

local cfg, ver, garbage = KEYS[1], KEYS[2], KEYS[3]
local state = redis.call("HGET", cfg, "state")
local epoch, live, shared, fork, origin = string.match(state or "", "^(%d+) (%d+) ([01]) (%S+)(.*)$")
if not epoch then return redis.error_reply("RC_NOSTATE") end
local raw = redis.call("HGET", ver, ARGV[1])
if not raw then return redis.error_reply("RC_NOVERSION") end
redis.call("HDEL", ver, ARGV[1])
local gen = tonumber(cjson.decode(raw).gen)
local used = false
for _, r in ipairs(redis.call("HVALS", ver)) do
  if tonumber(cjson.decode(r).gen) == gen then used = true break end
end
local freed = 0
if not used then
  if gen == tonumber(live) then
    shared = "0"
  else
    redis.call("SADD", garbage, gen)
    freed = gen
  end
end
local new = (epoch + 1) .. " " .. live .. " " .. shared .. " " .. fork .. origin
redis.call("HSET", cfg, "state", new)
return { freed, new }

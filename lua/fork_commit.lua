-- fork_commit.lua: finish a copy of the live generation: move the versions that shared it
-- to the copy, and let writers write the live generation again.
--
-- KEYS[1]  the space's config hash (state, document counts)
-- KEYS[2]  the space's versions hash
-- KEYS[3]  the space's fork lease
-- KEYS[4]  the space's garbage set
-- ARGV[1]  the token fork_begin.lua was given
--
-- Reply: the new state string.
-- Errors: "RC_LOST" (the lease expired and another client took the copy over: this copy is
--         garbage), "RC_COUNT <expected> <copied>" (the copy has a different number of
--         documents than the source, counted by copy_docs.lua in the config field
--         "copied": it is dropped, the versions stay where they were, and writers may
--         retry the copy; not checked in expiring spaces, config field "expiring").
-- Cost: O(number of versions).
-- Atomic because: the versions must move to the copy in the same instant as writers are
--       let back into the source generation, or a version would see a write.

local cfg, ver, lock, garbage = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local state = redis.call("HGET", cfg, "state")
local epoch, live, shared, fork, origin = string.match(state or "", "^(%d+) (%d+) ([01]) (%S+)(.*)$")
if fork ~= ARGV[1] or redis.call("GET", lock) ~= ARGV[1] then
  return redis.error_reply("RC_LOST")
end
local gen = redis.call("HGET", cfg, "fork_gen")
local copied = tonumber(redis.call("HGET", cfg, "copied") or "0")
redis.call("HDEL", cfg, "fork_gen", "copied")
redis.call("DEL", lock)
local expected = tonumber(redis.call("HGET", cfg, "n:" .. live) or "0")
-- In an expiring space documents expire unseen by the counts: the copy holds what was there.
if redis.call("HGET", cfg, "expiring") == "1" then expected = copied end
if copied ~= expected then
  redis.call("SADD", garbage, gen)
  redis.call("HSET", cfg, "state", (epoch + 1) .. " " .. live .. " " .. shared .. " -" .. origin)
  return redis.error_reply("RC_COUNT " .. expected .. " " .. copied)
end
local moved = 0
local entries = redis.call("HGETALL", ver)
for i = 1, #entries, 2 do
  local rec = cjson.decode(entries[i + 1])
  if tonumber(rec.gen) == tonumber(live) then
    rec.gen = tonumber(gen)
    redis.call("HSET", ver, entries[i], cjson.encode(rec))
    moved = moved + 1
  end
end
if moved == 0 then
  redis.call("SADD", garbage, gen)
else
  redis.call("HSET", cfg, "n:" .. gen, expected)
end
local new = (epoch + 1) .. " " .. live .. " 0 -" .. origin
redis.call("HSET", cfg, "state", new)
return new

-- stage_drop.lua: discard a stage: its record goes, its generation becomes garbage.
--
-- KEYS[1]  the space's config hash (state, the stage's record)
-- KEYS[2]  the space's copy lease
-- KEYS[3]  the space's garbage set
-- ARGV[1]  the stage's record field ("stage:<label>")
--
-- Reply: the generation that became garbage, or 0 when a live copy into the stage is still
--        running (its client finds the stage gone at stage_commit.lua and makes the copy
--        garbage then).
-- Errors: "RC_NOSTAGE" (no such stage). Nothing is written then.
-- Cost: O(1). The generation's documents and indexes are deleted afterwards, in steps
--       (rediscache.collect).
-- Atomic because: the record and the garbage mark must change together, or a crash in
--       between would leave a generation that nothing names and nothing deletes. A copy
--       whose client died (its lease expired) is ended here too: live writers are let in.

local cfg, lock, garbage = KEYS[1], KEYS[2], KEYS[3]
local record = redis.call("HGET", cfg, ARGV[1])
if not record then return redis.error_reply("RC_NOSTAGE") end
local gen, token, phase = string.match(record, "^(%d+) (%S+) (%S+)")
redis.call("HDEL", cfg, ARGV[1])
if phase == "copy" then
  local state = redis.call("HGET", cfg, "state")
  local epoch, live, shared, fork, origin = string.match(state or "", "^(%d+) (%d+) ([01]) (%S+)(.*)$")
  if fork == token and redis.call("EXISTS", lock) == 1 then return 0 end
  if fork == token then
    redis.call("HDEL", cfg, "fork_gen")
    redis.call("HSET", cfg, "state", (epoch + 1) .. " " .. live .. " " .. shared .. " -" .. origin)
  end
end
redis.call("SADD", garbage, gen)
return tonumber(gen)

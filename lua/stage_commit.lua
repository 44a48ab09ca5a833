-- stage_commit.lua: finish copying the live generation into a stage (stage.lua, copy mode):
-- the stage opens for writes, and live writers may write again.
--
-- KEYS[1]  the space's config hash (state, document counts, the stage's record)
-- KEYS[2]  the space's copy lease
-- KEYS[3]  the space's garbage set
-- ARGV[1]  the stage's record field ("stage:<label>")
-- ARGV[2]  the token stage.lua was given
--
-- Reply: { record, new state }: the stage's open record and the space's state.
-- Errors: "RC_NOSTATE" (the space was dropped meanwhile: nothing is written),
--         "RC_LOST" (the lease expired and a writer took the copy over: the copy is
--         garbage and the stage is gone), "RC_GONE" (the stage was discarded meanwhile: the
--         copy is garbage), "RC_COUNT <expected> <copied>" (the copy has another number
--         of documents than the live generation, counted by copy_docs.lua in the config
--         field "copied": it is garbage and the stage is gone; not checked in expiring
--         spaces). Live writers are let in again in every case but RC_LOST (there
--         the client that took over does it).
-- Cost: O(1).
-- Atomic because: the stage must open, and live writers come back, in one instant after
--       the copy is checked, or a live write could land between the check and the opening
--       and be missing from a copy that claims to be the live contents.

local cfg, lock, garbage = KEYS[1], KEYS[2], KEYS[3]
local state = redis.call("HGET", cfg, "state")
local epoch, live, shared, fork, origin = string.match(state or "", "^(%d+) (%d+) ([01]) (%S+)(.*)$")
if not epoch then return redis.error_reply("RC_NOSTATE") end
local record = redis.call("HGET", cfg, ARGV[1])
local gen, token = string.match(record or "", "^(%d+) (%S+) ")
if fork ~= ARGV[2] or redis.call("GET", lock) ~= ARGV[2] then
  if token == ARGV[2] then redis.call("HDEL", cfg, ARGV[1]) end
  return redis.error_reply("RC_LOST")
end
local copy = redis.call("HGET", cfg, "fork_gen")
local copied = tonumber(redis.call("HGET", cfg, "copied") or "0")
redis.call("HDEL", cfg, "fork_gen", "copied")
redis.call("DEL", lock)
local new = (epoch + 1) .. " " .. live .. " " .. shared .. " -" .. origin
redis.call("HSET", cfg, "state", new)
if token ~= ARGV[2] or gen ~= copy then
  redis.call("SADD", garbage, copy)
  return redis.error_reply("RC_GONE")
end
local expected = tonumber(redis.call("HGET", cfg, "n:" .. live) or "0")
if redis.call("HGET", cfg, "expiring") == "1" then expected = copied end
if copied ~= expected then
  redis.call("SADD", garbage, gen)
  redis.call("HDEL", cfg, ARGV[1])
  return redis.error_reply("RC_COUNT " .. expected .. " " .. copied)
end
redis.call("HSET", cfg, "n:" .. gen, expected)
local open = string.gsub(record, " copy ", " open ", 1)
redis.call("HSET", cfg, ARGV[1], open)
return { open, new }

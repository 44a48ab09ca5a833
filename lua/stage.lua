-- stage.lua: open a staged version of a space: a new generation that no reader of the live
-- space sees, written and searched through its own key names and index until it is
-- published (publish.lua) or discarded (stage_drop.lua).
--
-- KEYS[1]  the space's config hash (state, counters, stage records "stage:<label>")
-- KEYS[2]  the space's copy lease (a string key with an expiry; copy mode only)
-- ARGV[1]  the stage's record field in the config hash ("stage:<label>")
-- ARGV[2]  a random token naming this stage (records never repeat, even for one label)
-- ARGV[3]  creation time (unix seconds, as a string)
-- ARGV[4]  "empty" (the stage starts empty) or "copy" (the client copies the live
--          generation into it next, while live writers wait, as for a fork)
-- ARGV[5]  copy mode: lease in milliseconds (another client may take over after it)
-- ARGV[6]  the origin of the space the client opened (rediscache.state), or "" (a space
--          made before origins, whose state has none)
--
-- Reply: { generation, record, live generation, new state or "" (empty mode) }. The record
--        ("<generation> <token> <open|copy> <created_at>") is what staged writes check.
-- Errors: "RC_LABEL" (a stage with this label exists), "RC_BUSY" (copy mode: a copy of the
--         live generation is in progress: wait for it), "RC_NOSTATE" (the space was
--         dropped), "RC_ORIGIN" (it was dropped and made again under its name since the
--         client opened it).
--         Nothing is written then.
-- Cost: O(1). In copy mode the copy (copy_docs.lua over every live document, in batches
--       sent by the client) follows and stage_commit.lua ends it.
-- Atomic because: the label check, the new generation and the record must be one step, or
--       two clients staging one label would share a generation; in copy mode the lease and
--       the state change that stops live writers must come with them, or a write could slip
--       into the copy's source half copied.

local cfg, lock = KEYS[1], KEYS[2]
local state = redis.call("HGET", cfg, "state")
local epoch, live, shared, fork, origin = string.match(state or "", "^(%d+) (%d+) ([01]) (%S+)(.*)$")
if not epoch then return redis.error_reply("RC_NOSTATE") end
if string.sub(origin, 2) ~= ARGV[6] then return redis.error_reply("RC_ORIGIN") end
if redis.call("HEXISTS", cfg, ARGV[1]) == 1 then return redis.error_reply("RC_LABEL") end
local copy = ARGV[4] == "copy"
if copy and fork ~= "-" then return redis.error_reply("RC_BUSY") end
local gen = redis.call("HINCRBY", cfg, "next_gen", 1)
-- a copy is counted when stage_commit.lua checks it; until then the count is absent
if not copy then redis.call("HSET", cfg, "n:" .. gen, 0) end
local phase = "open"
local new = ""
if copy then
  phase = "copy"
  redis.call("HSET", cfg, "fork_gen", gen)
  redis.call("HDEL", cfg, "copied")  -- copy_docs.lua counts this copy here
  redis.call("SET", lock, ARGV[2], "PX", ARGV[5])
  new = (epoch + 1) .. " " .. live .. " " .. shared .. " " .. ARGV[2] .. origin
  redis.call("HSET", cfg, "state", new)
end
local record = gen .. " " .. ARGV[2] .. " " .. phase .. " " .. ARGV[3]
redis.call("HSET", cfg, ARGV[1], record)
return { gen, record, tonumber(live), new }

-- publish.lua: make a stage the live space (a pointer and alias switch, like rollback.lua),
-- keeping the replaced live contents as a version unless told not to.
--
-- KEYS[1]  the space's config hash (state, counters, the stage's record)
-- KEYS[2]  the space's versions hash
-- KEYS[3]  the alias searches of the live space use
-- KEYS[4]  the index of the stage's generation (complete: the client checked)
-- KEYS[5]  the space's garbage set
-- ARGV[1]  the stage's record field ("stage:<label>")
-- ARGV[2]  the record the client checked the index of (the stage must still have it)
-- ARGV[3]  "1": keep the replaced live contents as a version; "0": they become garbage
--          unless a version uses them
-- ARGV[4]  label of that version, or "" for none
-- ARGV[5]  creation time of that version (unix seconds, as a string)
--
-- Reply: { replaced live generation, the new version's id or 0, 1 if the replaced
--          generation became garbage else 0, new state, documents of the replaced
--          generation }
-- Errors: "RC_NOSTAGE" (no such stage), "RC_STALE" (the stage's record changed: reload),
--         "RC_NOTOPEN" (the stage is still being copied from live), "RC_BUSY" (a copy of
--         the live generation is in progress: wait for it), "RC_LABEL" (a version has this
--         label), "RC_NOSTATE". Nothing is written then.
-- Cost: O(number of versions) plus one FT.ALIASUPDATE; independent of the number of
--       documents: nothing is copied or re-indexed.
-- Atomic because: get/get_many (through the state) and search (through the alias) must
--       switch in the same instant, so no reader ever mixes the two models.

local cfg, ver, alias, index, garbage = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local state = redis.call("HGET", cfg, "state")
local epoch, live, _, fork, origin = string.match(state or "", "^(%d+) (%d+) ([01]) (%S+)(.*)$")
if not epoch then return redis.error_reply("RC_NOSTATE") end
local record = redis.call("HGET", cfg, ARGV[1])
if not record then return redis.error_reply("RC_NOSTAGE") end
if record ~= ARGV[2] then return redis.error_reply("RC_STALE") end
local gen, _, phase = string.match(record, "^(%d+) (%S+) (%S+)")
if phase ~= "open" then return redis.error_reply("RC_NOTOPEN") end
if fork ~= "-" then return redis.error_reply("RC_BUSY") end
local old = tonumber(live)
local vid = 0
local dropped = 0
local count = tonumber(redis.call("HGET", cfg, "n:" .. live) or "0")
if ARGV[3] == "1" then
  if ARGV[4] ~= "" then
    for _, raw in ipairs(redis.call("HVALS", ver)) do
      if cjson.decode(raw).label == ARGV[4] then return redis.error_reply("RC_LABEL") end
    end
  end
  vid = redis.call("HINCRBY", cfg, "next_ver", 1)
  local label = cjson.null
  if ARGV[4] ~= "" then label = ARGV[4] end
  redis.call("HSET", ver, vid,
    cjson.encode({ label = label, created_at = ARGV[5], count = count, gen = old }))
else
  local kept = false
  for _, r in ipairs(redis.call("HVALS", ver)) do
    if tonumber(cjson.decode(r).gen) == old then kept = true break end
  end
  if not kept then
    redis.call("SADD", garbage, old)
    dropped = 1
  end
end
redis.call("FT.ALIASUPDATE", alias, index)
redis.call("HDEL", cfg, ARGV[1])
local new = (epoch + 1) .. " " .. gen .. " 0 -" .. origin
redis.call("HSET", cfg, "state", new)
return { old, vid, dropped, new, count }

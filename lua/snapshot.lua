-- snapshot.lua: record the live generation of a space as a new immutable version.
--
-- KEYS[1]  the space's config hash (state, counters, document counts)
-- KEYS[2]  the space's versions hash (version id -> JSON record)
-- ARGV[1]  label, or "" for none
-- ARGV[2]  creation time (unix seconds, as a string)
-- ARGV[3]  the origin of the space the client opened (rediscache.state), or "" (a space
--          made before origins, whose state has none)
--
-- Reply: { id, count, gen, state }: the new version's id, its number of documents, the
--        generation it points at, and the space's new state string.
-- Errors: "RC_LABEL" (another version has this label), "RC_NOSTATE" (no state: the space
--         was dropped), "RC_ORIGIN" (the space was dropped and made again under its name
--         since the client opened it). Nothing is written then.
-- Cost: O(number of versions) to check the label; no document is read or copied. The
--       version shares the live generation until the live space is next written, when
--       the writer copies the generation for it (fork_begin.lua / fork_commit.lua).
-- Atomic because: the version must capture one instant: a concurrent writer's command
--       runs wholly before it (and is in the version) or wholly after it (and is not).

local cfg, ver = KEYS[1], KEYS[2]
local state = redis.call("HGET", cfg, "state")
local epoch, live, _, fork, origin = string.match(state or "", "^(%d+) (%d+) ([01]) (%S+)(.*)$")
if not epoch then return redis.error_reply("RC_NOSTATE") end
if string.sub(origin, 2) ~= ARGV[3] then return redis.error_reply("RC_ORIGIN") end
if ARGV[1] ~= "" then
  for _, raw in ipairs(redis.call("HVALS", ver)) do
    if cjson.decode(raw).label == ARGV[1] then return redis.error_reply("RC_LABEL") end
  end
end
local id = redis.call("HINCRBY", cfg, "next_ver", 1)
local count = tonumber(redis.call("HGET", cfg, "n:" .. live) or "0")
local label = cjson.null
if ARGV[1] ~= "" then label = ARGV[1] end
redis.call("HSET", ver, id,
  cjson.encode({ label = label, created_at = ARGV[2], count = count, gen = tonumber(live) }))
local new = (epoch + 1) .. " " .. live .. " 1 " .. fork .. origin
redis.call("HSET", cfg, "state", new)
return { id, count, tonumber(live), new }

-- fork_begin.lua: start copying the live generation for the versions that share it.
--
-- KEYS[1]  the space's config hash (state, counters)
-- KEYS[2]  the space's fork lease (a string key with an expiry)
-- KEYS[3]  the space's garbage set
-- ARGV[1]  a random token naming this copy
-- ARGV[2]  lease in milliseconds: if the copying client dies, another may take over after it
--
-- Reply: { live generation, new generation to copy into, new state }
-- Errors: "RC_BUSY" (another client holds a live lease on a copy: wait for it),
--         "RC_NOTSHARED" (no version shares the live generation: nothing to copy; a dead
--         copier's copy into a stage is ended first, and writers may go on),
--         "RC_NOSTATE". Nothing is written then.
-- Cost: O(1). The copy itself (copy_docs.lua over every document, in batches) and the new
--       generation's index follow; writers wait until fork_commit.lua publishes the result.
-- Atomic because: the check, the lease and the state change that stops writers must be
--       one step, or a writer could slip a write in between and into the copy's source.
--       The state is read here rather than compared with the client's, so that snapshots
--       taken meanwhile (which only add versions sharing the same generation) do not make
--       the copy start over.

local cfg, lock, garbage = KEYS[1], KEYS[2], KEYS[3]
local state = redis.call("HGET", cfg, "state")
local epoch, live, shared, fork, origin = string.match(state or "", "^(%d+) (%d+) ([01]) (%S+)(.*)$")
if not epoch then return redis.error_reply("RC_NOSTATE") end
if shared == "0" and fork == "-" then return redis.error_reply("RC_NOTSHARED") end
if fork ~= "-" then
  if redis.call("EXISTS", lock) == 1 then return redis.error_reply("RC_BUSY") end
  -- the previous copier died: its half-made generation is garbage
  local stale = redis.call("HGET", cfg, "fork_gen")
  if stale then redis.call("SADD", garbage, stale) end
  if shared == "0" then
    -- it was copying live into a stage: no version needs a copy, its copy is just ended
    redis.call("HDEL", cfg, "fork_gen", "copied")
    redis.call("HSET", cfg, "state", (epoch + 1) .. " " .. live .. " 0 -" .. origin)
    return redis.error_reply("RC_NOTSHARED")
  end
end
local gen = redis.call("HINCRBY", cfg, "next_gen", 1)
redis.call("HSET", cfg, "fork_gen", gen)
redis.call("HDEL", cfg, "copied")  -- copy_docs.lua counts this copy here
redis.call("SET", lock, ARGV[1], "PX", ARGV[2])
local new = (epoch + 1) .. " " .. live .. " " .. shared .. " " .. ARGV[1] .. origin
redis.call("HSET", cfg, "state", new)
return { tonumber(live), gen, new }

-- write.lua: store or delete documents of one generation of a space (the live one, or a
-- stage's), provided the space is in the state the client built the key names from.
--
-- KEYS[1]       the space's config hash (state, stage records and document counts)
-- KEYS[2..n+1]  document hashes of the generation (all share the space's hash tag)
-- ARGV[1]       the config field to check: "state" (the live generation) or the stage's
--               record field ("stage:<label>")
-- ARGV[2]       the value the client built the key names from (a live state must be
--               writable: not shared with a version, no copy in progress)
-- ARGV[3]       the config field counting the generation's documents ("n:<g>")
-- ARGV[4]       "put", "del", or "vec:create" / "vec:skip" / "vec:raise" (an update of
--               some fields, the vector, that leaves the other fields of a document alone;
--               the suffix says what to do with a document that does not exist: write it
--               with the given fields only, leave it out, or refuse the whole call)
-- ARGV[5]       put and vec: the documents' time to live in ms; "0": none (a write replaces
--               the record's expiry: PERSIST each document); "-": the space never expires
--               entries (leave expiries alone, nothing to undo)
-- ARGV[6..]     put and vec, for each document in KEYS order: the number of field/value
--               pairs to set, the pairs, the number of fields to delete, their names
--
-- Reply: put: how many documents were created (did not exist before); del: how many existed;
--        vec: {created, {i, ...}}: the 1-based indexes of the documents left out (vec:skip).
-- Errors: "RC_STALE" (the state or the stage changed: the client reloads it, copies the
--         generation for the versions that share it if needed, and retries), "RC_WRONGTYPE <i>" (document
--         i, 1-based, holds a key that is not a hash), "RC_MISSING <i>" (vec:raise: document
--         i does not exist). Nothing is written then.
-- Cost: O(n) commands (an HLEN, an HSET, HDEL of the fields the record no longer has, and
--       PEXPIRE/PERSIST in an expiring space, per document); each document write also
--       updates the search index synchronously (the HNSW insert dominates: about 0.2-0.4 ms
--       per 384-d vector).
-- Atomic because: the state check and the writes must be one step, or a rollback, snapshot
--       or publish between them would let a write land in a generation a version owns.

local cfg = KEYS[1]
if redis.call("HGET", cfg, ARGV[1]) ~= ARGV[2] then return redis.error_reply("RC_STALE") end
local n = #KEYS - 1
local exists = {}  -- checked for every document before anything is written
for i = 1, n do
  -- HLEN: 0 for no key (Redis deletes empty hashes), an error for a key of another type;
  -- cheaper than TYPE, whose status reply becomes a table per call
  local fields = redis.pcall("HLEN", KEYS[i + 1])
  if type(fields) == "table" then return redis.error_reply("RC_WRONGTYPE " .. i) end
  exists[i] = fields > 0
end
local changed = 0
if ARGV[4] == "del" then
  for i = 1, n do changed = changed + redis.call("DEL", KEYS[i + 1]) end
  if changed > 0 then redis.call("HINCRBY", cfg, ARGV[3], -changed) end
  return changed
end
local missing = nil  -- put: every document is written
if ARGV[4] ~= "put" then missing = string.sub(ARGV[4], 5) end
if missing == "raise" then
  for i = 1, n do
    if not exists[i] then return redis.error_reply("RC_MISSING " .. i) end
  end
end
local ttl = tonumber(ARGV[5])  -- nil for "-"
local skipped = {}
local a = 6
for i = 1, n do
  local key = KEYS[i + 1]
  local nset = tonumber(ARGV[a])
  local nstale = tonumber(ARGV[a + 1 + 2 * nset])
  if not exists[i] and missing == "skip" then
    skipped[#skipped + 1] = i
  else
    if not exists[i] then changed = changed + 1 end
    if nstale > 0 then
      redis.call("HDEL", key, unpack(ARGV, a + 2 + 2 * nset, a + 1 + 2 * nset + nstale))
    end
    redis.call("HSET", key, unpack(ARGV, a + 1, a + 2 * nset))
    if ttl then
      if ttl > 0 then redis.call("PEXPIRE", key, ttl) else redis.call("PERSIST", key) end
    end
  end
  a = a + 2 + 2 * nset + nstale
end
if changed > 0 then redis.call("HINCRBY", cfg, ARGV[3], changed) end
if missing then return {changed, skipped} end
return changed

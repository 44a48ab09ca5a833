-- combine.lua: a weighted sum or mean of stored vectors (plus a constant), stored as a new
-- embedding in the same atomic step. Used by average(into=...) and combine(into=...).
--
-- KEYS[1..n]  input document hashes of one space (all share the space's hash tag)
-- KEYS[n+1]   the document hash that receives the result
-- KEYS[n+2]   the space's config hash (state and document counts)
-- ARGV[1]     name of the hash field holding the raw vector ("vec")
-- ARGV[2]     dim: number of floats per vector
-- ARGV[3]     element format of stored vectors: "f" (float32) or "d" (float64), little-endian
-- ARGV[4]     "raise": a missing input is an error; "skip": missing inputs are left out
-- ARGV[5]     coefficients: n little-endian float64 packed together, one per input key
-- ARGV[6]     constant term: dim packed float64 (vector literals summed by the client), or ""
-- ARGV[7]     "mean": divide by the sum of the coefficients of the inputs found; "sum": don't
-- ARGV[8]     "1": scale the result to unit length
-- ARGV[9]     "1": the target space is cosine: refuse a result too small to have a direction
-- ARGV[10]    the state string the client built the key names from (must be writable)
-- ARGV[11]    the config field counting the live generation's documents ("n:<g>")
-- ARGV[12]    time to live of the stored result in ms (the space's default), or "0": leave
--             the target's expiry as it is
--
-- Reply: { used, missing, result, found } where result is dim little-endian float64 packed
--        together (the values stored, before rounding to the stored element format) and
--        found is a string of n characters, "1" for an input read and "0" for one missing.
-- Errors: "RC_STALE" (the space's state changed: reload, retry),
--         "RC_MISSING <i>" (input i, 1-based, is absent and mode is raise),
--         "RC_BADLEN <i> <bytes>" (stored vector i has the wrong byte length),
--         "RC_NOWEIGHT" (mean of nothing, or the coefficients used sum to <= 0),
--         "RC_ZERO" (the result is the zero vector and ARGV[8] is "1", or its squared norm is
--         below the smallest normal float of ARGV[3] and ARGV[9] is "1"),
--         "RC_RANGE <i> <value>" (element i, 1-based, of the result is out of the range of
--         ARGV[3]'s format; i = 0: the squared norm is above a quarter of the largest float,
--         so distances to it would overflow).
--         Nothing is written when an error is returned.
-- Cost: about 23 us of server time per 384-d input and 85 us per 1536-d input on the 2-core
--       dev box (docs/lua.md), all of it blocking the server: keep n * dim below about
--       400,000 floats per call (about 25 ms; e.g. 1,000 x 384 or 250 x 1536).
-- Atomic because: the inputs are read and the result written in one step, so the stored
--       embedding always equals the combination of one consistent state of its inputs.

local field, dim, fmt, mode = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local coefs, offset, divide = ARGV[5], ARGV[6], ARGV[7]
local normalize, nonzero = ARGV[8] == "1", ARGV[9] == "1"
local n = #KEYS - 2
local cfg = KEYS[n + 2]
if redis.call("HGET", cfg, "state") ~= ARGV[10] then return redis.error_reply("RC_STALE") end
local width = (fmt == "d") and 8 or 4
-- struct.unpack / unpack of more than ~7,990 values overflows the Lua stack: use chunks.
local CHUNK = 4096

-- acc += w * (vector in blob). One struct.unpack for dims up to CHUNK (formulation (b) in
-- docs/lua.md, ~25% cheaper than chunking); chunks below Lua's unpack limit above that.
local whole = {}
local function add(acc, blob, elem, w)
  local size = (elem == "d") and 8 or 4
  if dim <= CHUNK then
    whole[elem] = whole[elem] or ("<" .. string.rep(elem, dim))
    local vals = { struct.unpack(whole[elem], blob) }
    if w == 1 then
      for c = 1, dim do acc[c] = acc[c] + vals[c] end
    else
      for c = 1, dim do acc[c] = acc[c] + w * vals[c] end
    end
    return
  end
  local j = 0
  while j < dim do
    local count = math.min(CHUNK, dim - j)
    local vals = { struct.unpack("<" .. string.rep(elem, count), blob, j * size + 1) }
    for c = 1, count do acc[j + c] = acc[j + c] + w * vals[c] end
    j = j + count
  end
end

local acc = {}
for c = 1, dim do acc[c] = 0.0 end
if offset ~= "" then add(acc, offset, "d", 1.0) end

local used, missing, total, found = 0, 0, 0.0, {}
for i = 1, n do
  local blob = redis.call("HGET", KEYS[i], field)
  found[i] = blob and "1" or "0"
  if not blob then
    if mode == "raise" then return redis.error_reply("RC_MISSING " .. i) end
    missing = missing + 1
  else
    if #blob ~= dim * width then
      return redis.error_reply("RC_BADLEN " .. i .. " " .. #blob)
    end
    local w = struct.unpack("<d", coefs, (i - 1) * 8 + 1)
    add(acc, blob, fmt, w)
    used = used + 1
    total = total + w
  end
end

if divide == "mean" then
  if used == 0 or total <= 0 then return redis.error_reply("RC_NOWEIGHT") end
  for c = 1, dim do acc[c] = acc[c] / total end
end

local sq = 0.0
if normalize then
  -- scaled by the largest magnitude first: the norm of a huge or tiny vector must not
  -- overflow or underflow on the way to the unit vector
  local big = 0.0
  for c = 1, dim do
    local a = math.abs(acc[c])
    if a > big or a ~= a then big = a end
  end
  if big == 0 then return redis.error_reply("RC_ZERO") end
  if big ~= big or big == math.huge then return redis.error_reply("RC_RANGE 0 " .. tostring(big)) end
  for c = 1, dim do
    acc[c] = acc[c] / big
    sq = sq + acc[c] * acc[c]
  end
  local inv = 1.0 / math.sqrt(sq)
  for c = 1, dim do acc[c] = acc[c] * inv end
  sq = 1.0
else
  for c = 1, dim do sq = sq + acc[c] * acc[c] end
end
-- The result must be storable like any written vector (rediscache.codec.VectorCodec):
-- finite in the stored format, squared norm at most a quarter of the largest float, and
-- for cosine at least the smallest normal one.
local largest = (fmt == "d") and 1.7976931348623157e308 or 3.4028234663852886e38
local smallest = (fmt == "d") and 2.2250738585072014e-308 or 1.1754943508222875e-38
for c = 1, dim do
  local x = acc[c]
  if x ~= x or x > largest or x < -largest then
    return redis.error_reply("RC_RANGE " .. c .. " " .. tostring(x))
  end
end
if not (sq <= largest / 4) then return redis.error_reply("RC_RANGE 0 " .. tostring(sq)) end
if nonzero and sq < smallest then return redis.error_reply("RC_ZERO") end

local stored, result, j = {}, {}, 0
while j < dim do
  local count = math.min(CHUNK, dim - j)
  local part = { unpack(acc, j + 1, j + count) }
  stored[#stored + 1] = struct.pack("<" .. string.rep(fmt, count), unpack(part))
  result[#result + 1] = struct.pack("<" .. string.rep("d", count), unpack(part))
  j = j + count
end
if redis.call("EXISTS", KEYS[n + 1]) == 0 then redis.call("HINCRBY", cfg, ARGV[11], 1) end
redis.call("HSET", KEYS[n + 1], field, table.concat(stored))
local ttl = tonumber(ARGV[12]) or 0
if ttl > 0 then redis.call("PEXPIRE", KEYS[n + 1], ttl) end
return { used, missing, table.concat(result), table.concat(found) }

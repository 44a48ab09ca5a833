-- update_mean.lua: fold new items into a stored running embedding (exact mean or EMA).
--
-- KEYS[1]       the running embedding's document hash (created if absent)
-- KEYS[2..m+1]  document hashes of items given by key (same space, same hash tag)
-- KEYS[m+2]     the space's config hash (state and document counts)
-- ARGV[1]       name of the hash field holding the raw vector ("vec")
-- ARGV[2]       name of the hash field holding "<count>:<sha1 of the vector bytes>"
-- ARGV[3]       dim: number of floats per vector
-- ARGV[4]       element format of stored vectors: "f" (float32) or "d" (float64)
-- ARGV[5]       number of new items in all (keys and vector literals)
-- ARGV[6]       "mean" (exact running mean) or "ema" (exponential moving average)
-- ARGV[7]       EMA: coefficient of the stored vector when one exists ((1-alpha)^items)
-- ARGV[8]       coefficients of the key items when a stored vector exists (packed float64)
-- ARGV[9]       constant term (literal items, weighted) when a stored vector exists, or ""
-- ARGV[10]      coefficients of the key items when none exists (packed float64)
-- ARGV[11]      constant term when none exists, or ""
-- ARGV[12]      "1": the space is cosine: refuse a result too small to have a direction
-- ARGV[13]      the state string the client built the key names from (must be writable)
-- ARGV[14]      the config field counting the live generation's documents ("n:<g>")
-- ARGV[15]      time to live of the running embedding in ms (the space's default: each
--               update restarts it), or "0": leave its expiry as it is
--   For "mean" the client passes coefficients 1 and the plain sum of the literals in both
--   sets; the script weighs the stored vector by its count and divides.
--
-- Reply: { count, result }: items folded in so far, and the new vector as dim packed float64.
-- Errors: "RC_STALE" (the space's state changed: reload, retry),
--         "RC_MISSING <i>" (item key i, 1-based among the items, is absent),
--         "RC_BADLEN <i> <bytes>" (vector i has the wrong byte length; i = 0 is the target),
--         "RC_ZERO" (the new vector's squared norm is below the smallest normal float of
--         ARGV[4] in a cosine space), "RC_RANGE <i> <value>" (element i of the new vector
--         is out of ARGV[4]'s range; i = 0: its squared norm is above a quarter of the
--         largest float). Nothing is written then.
-- Cost: O((m + 1) * dim), about 23 us of server time per 384-d vector and 85 us per 1536-d
--       vector (docs/lua.md); the server is blocked meanwhile.
-- Atomic because: concurrent updates of one running embedding must not lose each other's
--       items: read, fold and write happen in one step.
-- The count is trusted only while the stored vector is the one it was written with (its
-- SHA1 matches): a vector replaced by put() counts as one item.

local field, count_field = ARGV[1], ARGV[2]
local dim, fmt, items, kind = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), ARGV[6]
local nonzero = ARGV[12] == "1"
local width = (fmt == "d") and 8 or 4
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

local target, cfg = KEYS[1], KEYS[#KEYS]
if redis.call("HGET", cfg, "state") ~= ARGV[13] then return redis.error_reply("RC_STALE") end
local old = redis.call("HGET", target, field)
local prev = 0
if old then
  if #old ~= dim * width then return redis.error_reply("RC_BADLEN 0 " .. #old) end
  prev = 1
  local tag = redis.call("HGET", target, count_field)
  if tag then
    local n, digest = string.match(tag, "^(%d+):(%x+)$")
    if n and digest == redis.sha1hex(old) then prev = tonumber(n) end
  end
end

local coefs, offset
if old then coefs, offset = ARGV[8], ARGV[9] else coefs, offset = ARGV[10], ARGV[11] end
local acc = {}
for c = 1, dim do acc[c] = 0.0 end
if offset ~= "" then add(acc, offset, "d", 1.0) end
for i = 2, #KEYS - 1 do
  local blob = redis.call("HGET", KEYS[i], field)
  if not blob then return redis.error_reply("RC_MISSING " .. (i - 1)) end
  if #blob ~= dim * width then return redis.error_reply("RC_BADLEN " .. (i - 1) .. " " .. #blob) end
  add(acc, blob, fmt, struct.unpack("<d", coefs, (i - 2) * 8 + 1))
end

if kind == "mean" then
  if old then add(acc, old, fmt, prev) end
  local inv = 1.0 / (prev + items)
  for c = 1, dim do acc[c] = acc[c] * inv end
elseif old then
  add(acc, old, fmt, tonumber(ARGV[7]))
end

-- The new vector must be storable like any written vector (rediscache.codec.VectorCodec):
-- finite in the stored format, squared norm at most a quarter of the largest float, and for
-- cosine at least the smallest normal one.
local largest = (fmt == "d") and 1.7976931348623157e308 or 3.4028234663852886e38
local smallest = (fmt == "d") and 2.2250738585072014e-308 or 1.1754943508222875e-38
local sq = 0.0
for c = 1, dim do
  local x = acc[c]
  if x ~= x or x > largest or x < -largest then
    return redis.error_reply("RC_RANGE " .. c .. " " .. tostring(x))
  end
  sq = sq + x * x
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
local blob = table.concat(stored)
local total = prev + items
if not old and redis.call("EXISTS", target) == 0 then redis.call("HINCRBY", cfg, ARGV[14], 1) end
redis.call("HSET", target, field, blob, count_field, total .. ":" .. redis.sha1hex(blob))
local ttl = tonumber(ARGV[15]) or 0
if ttl > 0 then redis.call("PEXPIRE", target, ttl) end
return { total, table.concat(result) }

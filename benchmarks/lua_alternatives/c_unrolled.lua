-- c_unrolled.lua (benchmark alternative, not used by the library): b_whole.lua with the
-- accumulation loop unrolled by 8 (fewer loop iterations and bound checks per value).
-- Only for dim <= 7,990: struct.unpack of more values overflows Lua's C stack.
--
-- KEYS[1..n]  document hashes of one space (one hash tag)
-- ARGV[1]     hash field holding the raw vector ("vec")
-- ARGV[2]     dim: floats per vector, at most 7990
--
-- Reply: the mean as dim little-endian float64 packed together.
-- Errors: "RC_MISSING <i>", "RC_BADLEN <i> <bytes>", "RC_DIM <dim>" (dim too large).

local field, dim = ARGV[1], tonumber(ARGV[2])
if dim > 7990 then return redis.error_reply("RC_DIM " .. dim) end
local n = #KEYS
local fmt = "<" .. string.rep("f", dim)
local last8 = dim - dim % 8

local acc
for i = 1, n do
  local blob = redis.call("HGET", KEYS[i], field)
  if not blob then return redis.error_reply("RC_MISSING " .. i) end
  if #blob ~= dim * 4 then return redis.error_reply("RC_BADLEN " .. i .. " " .. #blob) end
  if i == 1 then
    acc = { struct.unpack(fmt, blob) }
  else
    local v = { struct.unpack(fmt, blob) }
    for c = 1, last8, 8 do
      acc[c] = acc[c] + v[c]
      acc[c + 1] = acc[c + 1] + v[c + 1]
      acc[c + 2] = acc[c + 2] + v[c + 2]
      acc[c + 3] = acc[c + 3] + v[c + 3]
      acc[c + 4] = acc[c + 4] + v[c + 4]
      acc[c + 5] = acc[c + 5] + v[c + 5]
      acc[c + 6] = acc[c + 6] + v[c + 6]
      acc[c + 7] = acc[c + 7] + v[c + 7]
    end
    for c = last8 + 1, dim do acc[c] = acc[c] + v[c] end
  end
end

for c = 1, dim do acc[c] = acc[c] / n end
return struct.pack("<" .. string.rep("d", dim), unpack(acc, 1, dim))

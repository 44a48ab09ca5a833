-- gc_config.lua: a garbage collector's writes to the space's bookkeeping, only while its
-- lease is its own (a space dropped and created again under the name reuses these keys
-- and fields: a collector of the old space must not write the new one's config).
--
-- KEYS[1]  the space's collector lease
-- KEYS[2]  the space's config hash
-- KEYS[3]  the generation's set of listed documents
-- KEYS[4]  the space's garbage set
-- ARGV[1]  the collector's token
-- ARGV[2]  "listed": mark the generation listed (HSET ARGV[3] = ARGV[4]); "forget": the
--          generation is deleted: DEL KEYS[3], HDEL the fields ARGV[4..], SREM the
--          generation ARGV[3] from KEYS[4]; "list": renew the lease for ARGV[3] ms and
--          add the documents ARGV[4..] (at most a few thousand) to KEYS[3]
--
-- Reply: 1 when done, -1 when the lease is not this collector's (nothing written).
-- Errors: "RC_BAD_STEP" for another ARGV[2].
-- Cost: O(number of fields or documents).
-- Atomic because: the check of the lease and the writes must be one step, or a drop and
--       a re-creation of the space between them would let the old collector write the
--       new space's config, or leave a set of listed documents behind a drop (which
--       deletes the lease with the config, then the space's keys by SCAN).

if redis.call("GET", KEYS[1]) ~= ARGV[1] then
  return -1
end
if ARGV[2] == "listed" then
  -- only into an existing config: a drop deletes the config before it reaches the lease
  -- (SCAN + UNLINK), and an HSET then would create the config again, holding only this
  -- mark, which a new space of the name reads as a config of another layout. Without the
  -- mark the collection goes on (a role's drop collects after deleting the config); a
  -- collection taken up again lists the generation again (idempotent).
  if redis.call("EXISTS", KEYS[2]) == 1 then
    redis.call("HSET", KEYS[2], ARGV[3], ARGV[4])
  end
elseif ARGV[2] == "list" then
  redis.call("PEXPIRE", KEYS[1], ARGV[3])
  if #ARGV > 3 then
    redis.call("SADD", KEYS[3], unpack(ARGV, 4))
  end
elseif ARGV[2] == "forget" then
  redis.call("DEL", KEYS[3])
  redis.call("HDEL", KEYS[2], unpack(ARGV, 4))
  redis.call("SREM", KEYS[4], ARGV[3])
else
  return redis.error_reply("RC_BAD_STEP")
end
return 1

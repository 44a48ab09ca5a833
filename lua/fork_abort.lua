-- fork_abort.lua: give up a copy of the live generation that this client started and
-- cannot finish (its call was cancelled or interrupted): release the lease at once, so
-- that the next writer takes the copy over now instead of after the lease expires.
--
-- KEYS[1]  the space's fork lease
-- ARGV[1]  the token fork_begin.lua was given
--
-- Reply: 1 when the lease was this client's and is released, 0 when it was not (it
--        expired and another client took the copy over, or the copy was committed).
-- Errors: none.
-- Cost: O(1).
-- Atomic because: the lease must be deleted only while it is still this client's; a
--       GET then DEL from the client could delete the lease of the client that took over.

if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("DEL", KEYS[1])
  return 1
end
return 0

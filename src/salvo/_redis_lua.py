"""The Lua scripts the Redis limits store runs: each is one atomic round trip on Redis's clock.

Times are milliseconds of Redis's ``TIME``, so processes on machines whose clocks disagree
still agree. Floats travel as strings (Redis turns a Lua number into an integer).

Per key (``salvo:{<hash>}:...``; one hash tag, so a cluster keeps a key's parts on one slot):

- ``:r``: the rpm GCRA's theoretical arrival time (TAT): the next request may start then;
- ``:t``: the tpm GCRA's TAT: a token costs ``60000/tpm`` ms and the bucket holds one second's
  worth, as the in-process limiter's does; a request larger than the bucket goes when the
  bucket is empty and pushes the TAT past now (its debt, paid by the next ones);
- ``:p``: the end of a 429 pause;
- ``:l``: the leases of ``max_parallel_requests``: a sorted set of lease id -> expiry.

Every key expires when unused (a minute after its TAT, a lease set ``ttl`` after its last
renewal), and none holds anything but numbers and random lease ids.
"""

from __future__ import annotations

__all__ = [
    "ACQUIRE",
    "ADJUST",
    "BUDGET_RESERVE",
    "BUDGET_SETTLE",
    "GIVE_BACK",
    "HEARTBEAT",
    "PAUSE",
    "PAUSED",
    "RENEW",
]

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
"""

#: KEYS: r t p l. ARGV: rpm interval ms (0: none), ms per token (0: none), tokens, concurrency
#: cap (0: none), lease id ('' : take no lease), lease ttl ms, ms left before the call's
#: deadline (-1: none). -> {0, wait ms, rpm TAT, tpm cost} | {1, pause ms left} | {2, ''}: full.
ACQUIRE = (
    _NOW
    + """
local ri = tonumber(ARGV[1])
local ti = tonumber(ARGV[2])
local cap = tonumber(ARGV[4])
local left = tonumber(ARGV[7])
local pause = tonumber(redis.call('GET', KEYS[3]) or '0')
if left >= 0 and pause > now + left then
  return {1, tostring(pause - now)}
end
if cap > 0 and ARGV[5] ~= '' then
  local ttl = tonumber(ARGV[6])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  if redis.call('ZCARD', KEYS[4]) >= cap then
    return {2, ''}
  end
  redis.call('ZADD', KEYS[4], now + ttl, ARGV[5])
  redis.call('PEXPIRE', KEYS[4], math.ceil(ttl * 2))
end
local start = math.max(now, pause)
local rtat = 0
local ttat = 0
local cost = 0
if ri > 0 then
  rtat = tonumber(redis.call('GET', KEYS[1]) or '0')
  start = math.max(start, rtat)
end
if ti > 0 then
  ttat = tonumber(redis.call('GET', KEYS[2]) or '0')
  cost = tonumber(ARGV[3]) * ti
  start = math.max(start, ttat - 1000 + math.min(cost, 1000))
end
local mine = ''
if ri > 0 then
  local nr = start + ri
  mine = string.format('%.3f', nr)
  redis.call('SET', KEYS[1], mine, 'PX', math.ceil(nr - now) + 60000)
end
if ti > 0 then
  local nt = math.max(ttat, start) + cost
  redis.call('SET', KEYS[2], string.format('%.3f', nt), 'PX', math.ceil(nt - now) + 60000)
end
return {0, tostring(start - now), mine, tostring(cost)}
"""
)

#: KEYS: t. ARGV: ms to add to the tpm TAT (negative: tokens not used). Never moves it before now.
ADJUST = (
    _NOW
    + """
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local nt = math.max(tat + tonumber(ARGV[1]), now)
if nt > now then
  redis.call('SET', KEYS[1], string.format('%.3f', nt), 'PX', math.ceil(nt - now) + 60000)
end
return 1
"""
)

#: KEYS: r t l. ARGV: the rpm TAT this waiter set ('' : none), rpm interval ms, the tpm cost it
#: charged, lease id ('' : none). A cancelled waiter's reservation comes back when no one
#: reserved after it (rpm), its tokens always do (tpm), its lease always does.
GIVE_BACK = (
    _NOW
    + """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) == ARGV[1] then
  local back = tonumber(ARGV[1]) - tonumber(ARGV[2])
  local px = math.max(math.ceil(back - now), 0) + 60000
  redis.call('SET', KEYS[1], string.format('%.3f', back), 'PX', px)
end
local cost = tonumber(ARGV[3])
if cost > 0 then
  local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
  local nt = math.max(tat - cost, now)
  if nt > now then
    redis.call('SET', KEYS[2], string.format('%.3f', nt), 'PX', math.ceil(nt - now) + 60000)
  end
end
if ARGV[4] ~= '' then
  redis.call('ZREM', KEYS[3], ARGV[4])
end
return 1
"""
)

#: KEYS: p. ARGV: pause ms. The pause only ever grows.
PAUSE = (
    _NOW
    + """
local untl = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > cur then
  redis.call('SET', KEYS[1], string.format('%.3f', untl), 'PX', math.ceil(tonumber(ARGV[1])) + 1)
end
return 1
"""
)

#: KEYS: p. -> ms of pause left (0: none).
PAUSED = (
    _NOW
    + """
local p = tonumber(redis.call('GET', KEYS[1]) or '0')
return tostring(math.max(p - now, 0))
"""
)

#: KEYS: l. ARGV: lease ttl ms, then the lease ids this process holds there.
RENEW = (
    _NOW
    + """
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 2))
return 1
"""
)

#: KEYS: the process set. ARGV: this process's id, how long it counts as live (ms), '1' to
#: leave. -> how many processes are live.
HEARTBEAT = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 2))
return redis.call('ZCARD', KEYS[1])
"""
)

#: KEYS: the budget hash (fields ``spent``, ``reserved``). ARGV: the budget (USD), this
#: reservation (USD), ttl ms. -> 1 reserved | 0 it would pass the budget.
BUDGET_RESERVE = """
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
local usd = tonumber(ARGV[2])
if spent + reserved + usd > tonumber(ARGV[1]) + 1e-12 then
  return 0
end
redis.call('HINCRBYFLOAT', KEYS[1], 'reserved', usd)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

#: KEYS: the budget hash. ARGV: the reservation (USD), the real cost (USD), ttl ms.
BUDGET_SETTLE = """
local left = redis.call('HINCRBYFLOAT', KEYS[1], 'reserved', -tonumber(ARGV[1]))
if tonumber(left) < 1e-9 then
  redis.call('HSET', KEYS[1], 'reserved', '0')
end
redis.call('HINCRBYFLOAT', KEYS[1], 'spent', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

"""The Lua scripts the Redis session store runs: each step is one atomic round trip.

Keys, all under the configured prefix P (nothing outside it is ever read or written):

  P s:<sha256 of token>   hash: u username, c created, a last active, p peer, x certificate
                          subject, i the user's index key
  P all                   sorted set: token hash -> deadline (when idle or maximum age ends
                          it; +inf without either)
  P u:<sha256 of user>    sorted set: token hash -> creation time (the user's sessions)
  P t:...                 lists: failed-login times of the throttle
  P sweeper               string: who holds the sweep lease

Times come from the calling process (ARGV), so every process judges expiry by the same rule;
the store's settings (prefix, idle timeout, maximum age, ...) are constants of each process's
copy of a script (L{prelude}), so a request sends only what changes: token hash and time.
a session key also carries a Redis expiry a grace period after its deadline, so a store that
no process sweeps any more still empties itself.  Scripts build key names from the prefix,
so a Redis Cluster is not supported (one Redis or Valkey server, with replicas, is).
"""

from __future__ import annotations

import hashlib


class Script:
    """A script's text and the SHA-1 digest Redis knows it by (for EVALSHA)."""

    __slots__ = ("source", "sha")

    def __init__(self, source: bytes) -> None:
        self.source = source
        self.sha = hashlib.sha1(source).hexdigest().encode("ascii")


def _lua_string(text: str) -> str:
    """A Lua string literal for C{text} (a prefix: no spaces or control characters)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _lua_number(value: float | None) -> str:
    """A Lua number literal, or nil."""
    return "nil" if value is None else repr(float(value))


def prelude(prefix: str, *, idle: float | None, max_age: float | None, grace: float,
            max_sessions: int, max_per_user: int) -> bytes:
    """The constants the session scripts of one store start with."""
    return (f"local P, IDLE, MAXAGE, GRACE = {_lua_string(prefix)}, {_lua_number(idle)}, "
            f"{_lua_number(max_age)}, {_lua_number(grace)}\n"
            f"local MOST, MOST_EACH = {int(max_sessions)}, {int(max_per_user)}\n"
            ).encode("utf-8")


_COMMON = b"""
local function finish(h)
  local key = P .. 's:' .. h
  local index = redis.call('HGET', key, 'i')
  redis.call('DEL', key)
  redis.call('ZREM', P .. 'all', h)
  if index then redis.call('ZREM', index, h) end
end
local function deadline(created, active, idle, maxage)
  local d = math.huge
  if idle then d = math.min(d, active + idle) end
  if maxage then d = math.min(d, created + maxage) end
  return d
end
local function place(h, d, now, grace)
  local key = P .. 's:' .. h
  if d == math.huge then
    redis.call('ZADD', P .. 'all', '+inf', h)
    redis.call('PERSIST', key)
  else
    redis.call('ZADD', P .. 'all', d, h)
    redis.call('PEXPIRE', key, math.ceil((d - now + grace) * 1000))
  end
end
local function expired(now, created, active, idle, maxage)
  if idle and now - active >= idle then return 'expired: idle' end
  if maxage and now - created >= maxage then return 'expired: maximum age' end
  return nil
end
"""

# ARGV: hash, username, user digest, now, peer, subject.  Returns {0} when the store is full,
# else {1, evicted hashes...}.
CREATE = _COMMON + b"""
local h, user, index = ARGV[1], ARGV[2], P .. 'u:' .. ARGV[3]
local now = tonumber(ARGV[4])
local live = {}
for _, m in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  local d = redis.call('ZSCORE', P .. 'all', m)
  if not d then
    redis.call('ZREM', index, m)
  elseif (tonumber(d) or math.huge) > now then
    table.insert(live, m)
  end
end
if #live < MOST_EACH and redis.call('ZCOUNT', P .. 'all', '(' .. ARGV[4], '+inf') >= MOST then
  return {0}
end
local result = {1}
while #live >= MOST_EACH do
  local oldest = table.remove(live, 1)
  finish(oldest)
  table.insert(result, oldest)
end
redis.call('HSET', P .. 's:' .. h, 'u', user, 'c', ARGV[4], 'a', ARGV[4], 'p', ARGV[5],
           'x', ARGV[6], 'i', index)
redis.call('ZADD', index, now, h)
place(h, deadline(now, now, IDLE, MAXAGE), now, GRACE)
return result
"""

# ARGV: hash, now, touch ('1' or '0').
# Returns nil (no such session), or {state, u, c, a, p, x} where state is 'ok' or the
# reason the session just ended.
FIND = _COMMON + b"""
local h = ARGV[1]
local key = P .. 's:' .. h
local f = redis.call('HMGET', key, 'u', 'c', 'a', 'p', 'x')
if not f[1] then
  redis.call('ZREM', P .. 'all', h)
  return nil
end
local now, created, active = tonumber(ARGV[2]), tonumber(f[2]), tonumber(f[3])
local reason = expired(now, created, active, IDLE, MAXAGE)
if reason then
  finish(h)
  return {reason, f[1], f[2], f[3], f[4], f[5]}
end
if ARGV[3] == '1' then
  redis.call('HSET', key, 'a', ARGV[2])
  f[3] = ARGV[2]
  if IDLE then place(h, deadline(created, now, IDLE, MAXAGE), now, GRACE) end
end
return {'ok', f[1], f[2], f[3], f[4], f[5]}
"""

# ARGV: hash.  Returns 1 if the session existed.
END = _COMMON + b"""
local existed = redis.call('EXISTS', P .. 's:' .. ARGV[1])
finish(ARGV[1])
return existed
"""

# ARGV: user digest.  Returns the hashes of the sessions that were ended.
END_USER = _COMMON + b"""
local index = P .. 'u:' .. ARGV[1]
local ended = {}
for _, m in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  if redis.call('DEL', P .. 's:' .. m) == 1 then table.insert(ended, m) end
  redis.call('ZREM', P .. 'all', m)
end
redis.call('DEL', index)
return ended
"""

# ARGV: start, count.  Returns {hash, u, c, a, p, x, ...} for up to count sessions from
# position start of the deadline order (sessions whose key is gone are dropped).
FETCH = _COMMON + b"""
local found = {}
local start = tonumber(ARGV[1])
for _, m in ipairs(redis.call('ZRANGE', P .. 'all', start, start + tonumber(ARGV[2]) - 1)) do
  local f = redis.call('HMGET', P .. 's:' .. m, 'u', 'c', 'a', 'p', 'x')
  if f[1] then
    table.insert(found, m)
    for i = 1, 5 do table.insert(found, f[i]) end
  end
end
return found
"""

# ARGV: now, limit.  Ends up to limit sessions past their deadline; returns
# {hash, reason, u, c, a, p, x, ...} for each.
EXPIRE = _COMMON + b"""
local now = tonumber(ARGV[1])
local ended = {}
local due = redis.call('ZRANGEBYSCORE', P .. 'all', '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(due) do
  local f = redis.call('HMGET', P .. 's:' .. m, 'u', 'c', 'a', 'p', 'x')
  if f[1] then
    local reason = expired(now, tonumber(f[2]), tonumber(f[3]), IDLE, MAXAGE)
    if reason then
      finish(m)
      table.insert(ended, m)
      table.insert(ended, reason)
      for i = 1, 5 do table.insert(ended, f[i]) end
    end
  else
    redis.call('ZREM', P .. 'all', m)
  end
end
return ended
"""

# KEYS: the three failure lists.  ARGV: now, window, the three limits.  Returns the seconds
# to wait (as text), 0 when the attempt may go ahead.
RETRY_AFTER = b"""
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local wait = 0
for i = 1, 3 do
  local limit = tonumber(ARGV[2 + i])
  if redis.call('LLEN', KEYS[i]) >= limit then
    local first = tonumber(redis.call('LINDEX', KEYS[i], -limit))
    if first > now - window then wait = math.max(wait, first + window - now) end
  end
end
return tostring(wait)
"""

# KEYS: the three failure lists.  ARGV: now, window, the three limits.
FAILED = b"""
for i = 1, 3 do
  local limit = tonumber(ARGV[2 + i])
  redis.call('RPUSH', KEYS[i], ARGV[1])
  redis.call('LTRIM', KEYS[i], -limit, -1)
  redis.call('PEXPIRE', KEYS[i], math.ceil(tonumber(ARGV[2]) * 1000))
end
return 1
"""

# KEYS: the lease.  ARGV: who, milliseconds.  Takes or renews the lease; returns 1 if held.
LEASE = b"""
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: the lease.  ARGV: who.  Gives the lease up if this process holds it.
RELEASE = b"""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

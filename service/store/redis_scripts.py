"""The Lua side of the Redis store: every script it runs, and their limits.

Each script runs in Redis with nothing in between, which is what makes a
bump, a revocation or a settings change atomic with its audit event, and
the click's read of the epochs one consistent instant. ``MAX_LOG`` and
``MAX_USER`` are filled in by :class:`~service.store.redis.RedisStore`.
"""

from __future__ import annotations

__all__ = [
    "AUDIT",
    "BUMP",
    "COUNTER_INCR",
    "CREATE",
    "ISSUE_STATE",
    "MAX_USER_SIGNINS",
    "PRUNE",
    "PRUNE_BATCH",
    "REVOKE",
    "SETTINGS",
    "SIGNINS",
    "SIGNIN_BATCH",
    "TOKEN_STATE",
]

#: Sign-ins kept per user; the admin API reads at most 500.
MAX_USER_SIGNINS = 1000

# Append [seq, at, entry] to a log and trim it; a trimmed sign-in leaves its user's set too.
APPEND = """
local function append(seqkey, logkey, atkey, at, entry, userprefix)
  local seq = redis.call('INCR', seqkey)
  local member = '[' .. seq .. ',' .. at .. ',' .. entry .. ']'
  redis.call('ZADD', logkey, seq, member)
  redis.call('ZADD', atkey, at, seq)
  for _ = 1, 4 do
    if redis.call('ZCARD', logkey) <= MAX_LOG then break end
    local old = redis.call('ZPOPMIN', logkey)
    redis.call('ZREM', atkey, old[2])
    if userprefix then redis.call('ZREM', userprefix .. cjson.decode(old[1])[3][1], old[1]) end
  end
  return seq, member
end
"""
# KEYS[1] meta, KEYS[2] seq, KEYS[3] audit, KEYS[4] audit_at in every script that audits.
AUDIT = (
    APPEND
    + """
local function audit(at, actor, action, detail)
  local entry = '[' .. cjson.encode(actor) .. ',' .. cjson.encode(action) .. ',' .. detail .. ']'
  append(KEYS[2], KEYS[3], KEYS[4], at, entry, nil)
end
"""
)
# KEYS[5] user_epochs. A store whose meta hash is gone, or whose user epochs
# lost their marker (evicted or deleted on their own), is created anew: a new
# incarnation refuses every earlier token, where a lost user_epochs hash alone
# would have revived every revoked user's tokens.
CREATE = """
local inc = redis.call('HGET', KEYS[1], 'incarnation')
if inc and redis.call('HGET', KEYS[5], '\\n') == inc then return 0 end
redis.call('DEL', KEYS[1], KEYS[5])
redis.call('HSET', KEYS[5], '\\n', ARGV[1])
redis.call('HSET', KEYS[1], 'incarnation', ARGV[1], 'epoch', 1, 'changed_at', ARGV[2],
  'changed_by', 'system', 'reason', 'store created',
  'auto_login_enabled', ARGV[3], 'token_ttl_seconds', ARGV[4])
audit(ARGV[2], 'system', 'store.create', '{"incarnation": ' .. cjson.encode(ARGV[1]) .. '}')
return 1
"""
BUMP = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if not redis.call('HGET', KEYS[1], 'epoch') then return redis.error_reply('ERR no epoch') end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'changed_at', ARGV[1], 'changed_by', ARGV[2], 'reason', ARGV[3])
audit(ARGV[1], ARGV[2], 'epoch.bump',
  '{"epoch": ' .. epoch .. ', "reason": ' .. cjson.encode(ARGV[3]) .. '}')
return epoch
"""
REVOKE = """
local inc = redis.call('HGET', KEYS[1], 'incarnation')
if not inc or redis.call('HGET', KEYS[5], '\\n') ~= inc then return false end
local epoch = redis.call('HINCRBY', KEYS[5], ARGV[1], 1)
audit(ARGV[2], ARGV[3], 'user.revoke', '{"reason": ' .. cjson.encode(ARGV[4])
  .. ', "user_epoch": ' .. epoch .. ', "user_id": ' .. cjson.encode(ARGV[1]) .. '}')
return epoch
"""
SETTINGS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if #ARGV > 3 then redis.call('HSET', KEYS[1], unpack(ARGV, 4)) end
audit(ARGV[1], ARGV[2], 'settings.update', ARGV[3])
return redis.call('HMGET', KEYS[1], 'auto_login_enabled', 'token_ttl_seconds')
"""
# The hot path: incarnation, global epoch and user epoch as of one instant.
# The user epochs carry the incarnation under the field "\\n" (never a user
# id): without it they were lost, and the store must be created anew.
TOKEN_STATE = """
local m = redis.call('HMGET', KEYS[1], 'incarnation', 'epoch')
if not m[1] and not m[2] and redis.call('EXISTS', KEYS[1]) == 0 then return false end
local u = redis.call('HMGET', KEYS[2], ARGV[1], '\\n')
if m[1] and u[2] ~= m[1] then return false end
return {m[1], m[2], u[1]}
"""
ISSUE_STATE = """
local meta = redis.call('HGETALL', KEYS[1])
if #meta == 0 then return false end
local inc = redis.call('HGET', KEYS[1], 'incarnation')
if inc and redis.call('HGET', KEYS[2], '\\n') ~= inc then return false end
local epochs = {}
for i = 1, #ARGV, 1000 do  -- unpack() has a stack limit
  for _, v in ipairs(redis.call('HMGET', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))) do
    epochs[#epochs + 1] = v
  end
end
return {meta, epochs}
"""
# KEYS: seq, signins, signins_at; ARGV: per-user key prefix, then (at, entry, user)
# for each sign-in of the batch. The per-user keys are derived, as prune does.
SIGNINS = (
    APPEND
    + """
for i = 2, #ARGV, 3 do
  local seq, member = append(KEYS[1], KEYS[2], KEYS[3], ARGV[i], ARGV[i + 1], ARGV[1])
  local userkey = ARGV[1] .. ARGV[i + 2]
  redis.call('ZADD', userkey, seq, member)
  redis.call('ZREMRANGEBYRANK', userkey, 0, -MAX_USER - 1)
end
"""
)
#: Sign-ins a script appends at most, so that one script never blocks Redis for long.
SIGNIN_BATCH = 100
# INCRBY, and a new window gets its expiry in the same step.
COUNTER_INCR = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if value == tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return value
"""

# KEYS: log, log_at; ARGV: '(' .. before, batch size, per-user key prefix or ''.
PRUNE = """
local seqs = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, seq in ipairs(seqs) do
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], seq, seq)) do
    redis.call('ZREM', KEYS[1], member)
    if ARGV[3] ~= '' then redis.call('ZREM', ARGV[3] .. cjson.decode(member)[3][1], member) end
  end
  redis.call('ZREM', KEYS[2], seq)
end
return #seqs
"""
PRUNE_BATCH = 500

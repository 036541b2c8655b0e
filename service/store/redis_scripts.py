"""The Lua side of the Redis store: every script it runs, and their limits.

Each script runs in Redis with nothing in between, which is what makes a
bump, a revocation or a settings change atomic with its audit event, and
the click's read of the epochs one consistent instant. ``MAX_LOG`` and
``MAX_USER`` are filled in by :class:`~service.store.redis.RedisStore`.

Every per-tenant script gets the tenant's meta hash as ``KEYS[1]`` and the
tenant's key prefix (``autologin:{acme}:``) as ``ARGV[1]``; the tenant's
other keys are that prefix, its incarnation and a name
(``autologin:{acme}:<incarnation>:user_epochs``), all under the tenant's one
hash tag, so no script touches two tenants and a tenant deleted and made
again under the same id shares no key with the old one. A script answers
``NO_TENANT`` when the meta hash is missing and ``LOST`` when the tenant's
user epochs lost their marker (evicted or deleted on their own).
"""

from __future__ import annotations

__all__ = [
    "AUDIT",
    "BUMP",
    "COUNTER_INCR",
    "CREATE",
    "CREATE_KEY",
    "DELETE_TENANT",
    "FIND_KEY",
    "ISSUE_STATE",
    "LOST",
    "MAX_USER_SIGNINS",
    "NO_TENANT",
    "PLATFORM_AUDIT",
    "PRUNE",
    "PRUNE_BATCH",
    "PRUNE_PLATFORM",
    "REVOKE",
    "REVOKE_KEY",
    "SETTINGS",
    "SIGNINS",
    "SIGNIN_BATCH",
    "TAKE_OVER",
    "TOKEN_STATE",
    "UPDATE_TENANT",
]

#: Sign-ins kept per user; the admin API reads at most 500.
MAX_USER_SIGNINS = 1000
NO_TENANT = "!no-tenant"
LOST = "!lost"

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
# The tenant's incarnation and key base, or the reason there is none.
TENANT = """
local function tenant()
  local inc = redis.call('HGET', KEYS[1], 'incarnation')
  if not inc then
    if redis.call('EXISTS', KEYS[1]) == 1 then error('ERR meta hash without incarnation') end
    return nil, '!no-tenant'
  end
  local base = ARGV[1] .. inc .. ':'
  if redis.call('HGET', base .. 'user_epochs', '\\n') ~= inc then return nil, '!lost' end
  return inc, base
end
"""
AUDIT = (
    APPEND
    + TENANT
    + """
local function audit(base, at, actor, action, detail)
  local entry = '[' .. cjson.encode(actor) .. ',' .. cjson.encode(action) .. ',' .. detail .. ']'
  append(base .. 'seq', base .. 'audit', base .. 'audit_at', at, entry, nil)
end
"""
)
# ARGV: base, new incarnation, now, enabled, ttl, portal ('' for none), mode,
# actor, audit detail. Mode 'store': make the tenant (default) when missing or
# lost, audited as store.create. Mode 'tenant': make a new tenant, audited as
# tenant.create; 0 when it exists. A lost tenant (its user epochs gone) starts
# again with a new incarnation, keeping its address and creation time: the
# new incarnation refuses every earlier token, where a lost user_epochs hash
# alone would have revived every revoked user's tokens.
CREATE = (
    AUDIT
    + """
local inc, why = tenant()
if inc then return 0 end
if why == '!lost' and ARGV[7] == 'tenant' then return 0 end
local portal, created = ARGV[6], ARGV[3]
if why == '!lost' then
  portal = redis.call('HGET', KEYS[1], 'portal_base_url') or ''
  created = redis.call('HGET', KEYS[1], 'created_at') or ARGV[3]
end
redis.call('DEL', KEYS[1])
local base = ARGV[1] .. ARGV[2] .. ':'
redis.call('HSET', base .. 'user_epochs', '\\n', ARGV[2])
redis.call('HSET', KEYS[1], 'incarnation', ARGV[2], 'epoch', 1, 'changed_at', ARGV[3],
  'changed_by', 'system', 'reason', ARGV[7] == 'tenant' and 'tenant created' or 'store created',
  'auto_login_enabled', ARGV[4], 'token_ttl_seconds', ARGV[5], 'created_at', created,
  'portal_base_url', portal)
if ARGV[7] == 'tenant' then
  audit(base, ARGV[3], ARGV[8], 'tenant.create', ARGV[9])
else
  audit(base, ARGV[3], 'system', 'store.create', '{"incarnation": ' .. cjson.encode(ARGV[2]) .. '}')
end
return 1
"""
)
BUMP = (
    AUDIT
    + """
local inc, base = tenant()
if not inc then return base end
if not redis.call('HGET', KEYS[1], 'epoch') then return redis.error_reply('ERR no epoch') end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'changed_at', ARGV[2], 'changed_by', ARGV[3], 'reason', ARGV[4])
audit(base, ARGV[2], ARGV[3], 'epoch.bump',
  '{"epoch": ' .. epoch .. ', "reason": ' .. cjson.encode(ARGV[4]) .. '}')
return epoch
"""
)
REVOKE = (
    AUDIT
    + """
local inc, base = tenant()
if not inc then return base end
local epoch = redis.call('HINCRBY', base .. 'user_epochs', ARGV[2], 1)
audit(base, ARGV[3], ARGV[4], 'user.revoke', '{"reason": ' .. cjson.encode(ARGV[5])
  .. ', "user_epoch": ' .. epoch .. ', "user_id": ' .. cjson.encode(ARGV[2]) .. '}')
return epoch
"""
)
SETTINGS = (
    AUDIT
    + """
local inc, base = tenant()
if not inc then return base end
if #ARGV > 4 then redis.call('HSET', KEYS[1], unpack(ARGV, 5)) end
audit(base, ARGV[2], ARGV[3], 'settings.update', ARGV[4])
return redis.call('HMGET', KEYS[1], 'auto_login_enabled', 'token_ttl_seconds')
"""
)
# ARGV: base, portal, at, actor, detail.
UPDATE_TENANT = (
    AUDIT
    + """
local inc, base = tenant()
if not inc then return base end
redis.call('HSET', KEYS[1], 'portal_base_url', ARGV[2])
audit(base, ARGV[3], ARGV[4], 'tenant.update', ARGV[5])
return 1
"""
)
# The tenant is gone when this returns: its meta hash is the only way to its
# keys. ARGV: base, the incarnation the caller put in the trash first.
DELETE_TENANT = """
local inc = redis.call('HGET', KEYS[1], 'incarnation')
if not inc then return '!no-tenant' end
if inc ~= ARGV[2] then return '!changed' end
redis.call('DEL', KEYS[1])
return inc
"""
# A tenant key by its hex digest: {name, record, last use ('' for never)} or false.
FIND = """
local function find_key(base, digest)
  local name = redis.call('HGET', base .. 'digests', digest)
  local record = name and redis.call('HGET', base .. 'keys', name)
  if not record then return false end
  return {name, record, redis.call('HGET', base .. 'used', name) or ''}
end
"""
# The hot path: incarnation, global epoch and user epoch as of one instant.
# The user epochs carry the incarnation under the field "\\n" (never a user id).
TOKEN_STATE = (
    FIND
    + """
local m = redis.call('HMGET', KEYS[1], 'incarnation', 'epoch')
if not m[1] then
  if redis.call('EXISTS', KEYS[1]) == 0 then return '!no-tenant' end
  return {false, m[2], false}
end
local base = ARGV[1] .. m[1] .. ':'
local u = redis.call('HMGET', base .. 'user_epochs', ARGV[2], '\\n')
if u[2] ~= m[1] then return '!lost' end
if not ARGV[3] then return {m[1], m[2], u[1]} end
local key = find_key(base, ARGV[3])  -- the portal's tenant key, in the same trip
if not key then return {m[1], m[2], u[1], false} end
return {m[1], m[2], u[1], key[1], key[2], key[3]}
"""
)
ISSUE_STATE = (
    TENANT
    + """
local inc, base = tenant()
if not inc then return base end
local meta = redis.call('HGETALL', KEYS[1])
local epochs = {}
for i = 2, #ARGV, 1000 do  -- unpack() has a stack limit
  local last = math.min(i + 999, #ARGV)
  for _, v in ipairs(redis.call('HMGET', base .. 'user_epochs', unpack(ARGV, i, last))) do
    epochs[#epochs + 1] = v
  end
end
return {meta, epochs}
"""
)
# ARGV: base, the incarnation the clicks were of ('' for any), then (at,
# entry, user) for each sign-in of the batch. A tenant deleted (or made
# again) since the clicks gets nothing: their log is gone with it.
SIGNINS = (
    APPEND
    + """
local inc = redis.call('HGET', KEYS[1], 'incarnation')
if not inc or (ARGV[2] ~= '' and ARGV[2] ~= inc) then return 0 end
local base = ARGV[1] .. inc .. ':'
local userprefix = base .. 'signins:'
for i = 3, #ARGV, 3 do
  local seq, member = append(base .. 'seq', base .. 'signins', base .. 'signins_at',
    ARGV[i], ARGV[i + 1], userprefix)
  local userkey = userprefix .. ARGV[i + 2]
  redis.call('SADD', base .. 'signin_users', ARGV[i + 2])
  redis.call('ZADD', userkey, seq, member)
  redis.call('ZREMRANGEBYRANK', userkey, 0, -MAX_USER - 1)
end
return 1
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

# Drop up to ``batch`` entries older than ``before`` ('(' .. seconds) from a log.
PRUNE_LOG = """
local function prune(log, at, before, batch, userprefix)
  local seqs = redis.call('ZRANGEBYSCORE', at, '-inf', before, 'LIMIT', 0, batch)
  for _, seq in ipairs(seqs) do
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', log, seq, seq)) do
      redis.call('ZREM', log, member)
      if userprefix then redis.call('ZREM', userprefix .. cjson.decode(member)[3][1], member) end
    end
    redis.call('ZREM', at, seq)
  end
  return #seqs
end
"""
# A tenant's log. KEYS: meta; ARGV: base, '(' .. before, batch size, 'audit' or 'signins'.
PRUNE = (
    PRUNE_LOG
    + """
local inc = redis.call('HGET', KEYS[1], 'incarnation')
if not inc then return 0 end
local base = ARGV[1] .. inc .. ':'
local userprefix = ARGV[4] == 'signins' and base .. 'signins:' or nil
return prune(base .. ARGV[4], base .. ARGV[4] .. '_at', ARGV[2], ARGV[3], userprefix)
"""
)
# The platform's log. KEYS: audit, audit_at; ARGV: '(' .. before, batch size.
PRUNE_PLATFORM = PRUNE_LOG + "return prune(KEYS[1], KEYS[2], ARGV[1], ARGV[2], nil)\n"
PRUNE_BATCH = 500

# The platform's own log. KEYS: seq, audit, audit_at; ARGV: at, actor, action, detail.
PLATFORM_AUDIT = (
    APPEND
    + """
local entry = '[' .. cjson.encode(ARGV[2]) .. ',' .. cjson.encode(ARGV[3]) .. ',' .. ARGV[4] .. ']'
append(KEYS[1], KEYS[2], KEYS[3], ARGV[1], entry, nil)
return 1
"""
)
# ARGV: base, name, hex digest, record JSON, at, actor, detail. 0: the name is taken.
CREATE_KEY = (
    AUDIT
    + """
local inc, base = tenant()
if not inc then return base end
if redis.call('HSETNX', base .. 'keys', ARGV[2], ARGV[4]) == 0 then return 0 end
redis.call('HSET', base .. 'digests', ARGV[3], ARGV[2])
audit(base, ARGV[5], ARGV[6], 'key.create', ARGV[7])
return 1
"""
)
# ARGV: base, name, at, actor, detail. 0: no such key.
REVOKE_KEY = (
    AUDIT
    + """
local inc, base = tenant()
if not inc then return base end
local record = redis.call('HGET', base .. 'keys', ARGV[2])
if not record then return 0 end
redis.call('HDEL', base .. 'digests', cjson.decode(record)['digest'])
redis.call('HDEL', base .. 'keys', ARGV[2])
redis.call('HDEL', base .. 'used', ARGV[2])
audit(base, ARGV[3], ARGV[4], 'key.revoke', ARGV[5])
return 1
"""
)
# ARGV: base, hex digest -> {name, record, last use} or false.
FIND_KEY = (
    FIND
    + """
local inc = redis.call('HGET', KEYS[1], 'incarnation')
if not inc then return false end
return find_key(ARGV[1] .. inc .. ':', ARGV[2])
"""
)
# Take a single-tenant store over as the tenant default, in one step (on one
# Redis: the old keys have no hash tag, so this never runs on a Cluster).
# KEYS: old meta, old user_epochs, seq, audit, audit_at, signins, signins_at,
# new meta, platform info, tenant registry. ARGV: new base (with the
# incarnation), now. The per-user sign-in sets were renamed before.
TAKE_OVER = """
local inc = redis.call('HGET', KEYS[1], 'incarnation')
if not inc then return 0 end
local names = {'user_epochs', 'seq', 'audit', 'audit_at', 'signins', 'signins_at'}
for i, name in ipairs(names) do
  if redis.call('EXISTS', KEYS[i + 1]) == 1 then
    redis.call('RENAME', KEYS[i + 1], ARGV[1] .. name)
  end
end
local created = ARGV[2]
local first = redis.call('ZRANGE', ARGV[1] .. 'audit', 0, 0)
if first[1] then created = tostring(cjson.decode(first[1])[2]) end
redis.call('HSET', KEYS[1], 'created_at', created, 'portal_base_url', '')
redis.call('RENAME', KEYS[1], KEYS[8])
redis.call('HSET', KEYS[9], 'layout', '2', 'legacy_before', ARGV[2])
redis.call('ZADD', KEYS[10], 0, 'default')
return 1
"""

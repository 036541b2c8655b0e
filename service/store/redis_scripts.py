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

On a Redis Cluster every key a script reads or writes is also declared in
``KEYS`` (after the meta hash), named with the incarnation the caller last
saw, so that Redis itself routes the script, and refuses it (``TRYAGAIN``)
while the tenant's slot is half moved to another shard, rather than let it
read a key that has not arrived as missing. A script whose declared keys
name another incarnation than the tenant's answers ``STALE``, writing
nothing; the caller reads the incarnation again. On one Redis only the meta
hash is declared, as before.
"""

from __future__ import annotations

__all__ = [
    "AUDIT",
    "CLEAN_LEDGER",
    "LINK",
    "LINKS_PAGE",
    "RECORD_LINKS",
    "REVOKE_LINK",
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
    "STALE",
    "TAKE_OVER",
    "TOKEN_STATE",
    "UPDATE_TENANT",
]

#: Sign-ins kept per user; the admin API reads at most 500.
MAX_USER_SIGNINS = 1000
NO_TENANT = "!no-tenant"
LOST = "!lost"
STALE = "!stale"

# On a Cluster: are the declared keys (KEYS[2] on) those of incarnation ``inc``?
DECLARED = """
local function stale(inc)
  return KEYS[2] ~= nil and string.sub(KEYS[2], 1, #ARGV[1] + #inc + 1) ~= ARGV[1] .. inc .. ':'
end
"""

# Append [seq, at, entry] to a log and trim it; a trimmed sign-in leaves its user's set too.
# The audit log is ordered by seq (written in the same step as its change),
# the sign-in log by the click's own time (``by_time``): a worker's buffer
# may reach Redis after a later click's.
APPEND = """
local function append(seqkey, logkey, atkey, at, entry, userprefix, by_time)
  local seq = redis.call('INCR', seqkey)
  local member = '[' .. seq .. ',' .. at .. ',' .. entry .. ']'
  redis.call('ZADD', logkey, by_time and at or seq, member)
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
TENANT = (
    DECLARED
    + """
local function tenant()
  local inc = redis.call('HGET', KEYS[1], 'incarnation')
  if not inc then
    if redis.call('EXISTS', KEYS[1]) == 1 then error('ERR meta hash without incarnation') end
    return nil, '!no-tenant'
  end
  if stale(inc) then return nil, '!stale' end
  local base = ARGV[1] .. inc .. ':'
  if redis.call('HGET', base .. 'user_epochs', '\\n') ~= inc then return nil, '!lost' end
  return inc, base
end
"""
)
AUDIT = (
    APPEND
    + TENANT
    + """
local function audit(base, at, actor, action, detail)
  local entry = '[' .. cjson.encode(actor) .. ',' .. cjson.encode(action) .. ',' .. detail .. ']'
  append(base .. 'seq', base .. 'audit', base .. 'audit_at', at, entry, nil, false)
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
if why == '!stale' then return why end
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
# ARGV: base, at, actor, reason, the new epoch's random identity.
BUMP = (
    AUDIT
    + """
local inc, base = tenant()
if not inc then return base end
if not redis.call('HGET', KEYS[1], 'epoch') then return redis.error_reply('ERR no epoch') end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'changed_at', ARGV[2], 'changed_by', ARGV[3], 'reason', ARGV[4],
  'epoch_id', ARGV[5])
audit(base, ARGV[2], ARGV[3], 'epoch.bump',
  '{"epoch": ' .. epoch .. ', "reason": ' .. cjson.encode(ARGV[4]) .. '}')
return epoch
"""
)
# ARGV: base, user, at, actor, reason, two random epochs (the second if the
# first is the user's epoch now): never +1, so never a value a token had.
REVOKE = (
    AUDIT
    + """
local inc, base = tenant()
if not inc then return base end
local epoch = ARGV[6]
if redis.call('HGET', base .. 'user_epochs', ARGV[2]) == epoch then epoch = ARGV[7] end
redis.call('HSET', base .. 'user_epochs', ARGV[2], epoch)
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
return redis.call('HGETALL', KEYS[1])
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
# The hot path: incarnation, global epoch and user epoch as of one instant,
# and the link's state: voided, the tenant's binding setting, the device it
# is bound to, with the first binding made here when the token is current.
# The user epochs carry the incarnation under the field "\\n" (never a user id).
# ARGV: base, user, key digest ('' for none), link id, device ('' for none),
# the token's incarnation, epoch and user epoch, when a binding may go, the
# token's epoch identity. Answers {incarnation, epoch, user epoch, voided,
# bind (2: bound here and now), bound device, epoch identity[, key name,
# record, use]}.
TOKEN_STATE = (
    FIND
    + DECLARED
    + """
local m = redis.call('HMGET', KEYS[1], 'incarnation', 'epoch', 'bind_to_first_device', 'epoch_id')
if not m[1] then
  if redis.call('EXISTS', KEYS[1]) == 0 then return '!no-tenant' end
  return {false, m[2], false, 0, 0, false, false}
end
if stale(m[1]) then return '!stale' end
local base = ARGV[1] .. m[1] .. ':'
local u = redis.call('HMGET', base .. 'user_epochs', ARGV[2], '\\n')
if u[2] ~= m[1] then return '!lost' end
local voided, bind, bound = 0, 0, false
if ARGV[4] ~= '' then
  voided = redis.call('HEXISTS', base .. 'voided', ARGV[4])
  if m[3] == '1' then
    bind = 1
    bound = redis.call('HGET', base .. 'bound', ARGV[4])
    if not bound and ARGV[5] ~= '' and voided == 0 and ARGV[6] == m[1] and ARGV[7] == m[2]
        and ARGV[8] == (u[1] or '0') and ARGV[10] == (m[4] or '0') then
      redis.call('HSET', base .. 'bound', ARGV[4], ARGV[5])
      redis.call('ZADD', base .. 'bound_exp', ARGV[9], ARGV[4])
      bind, bound = 2, ARGV[5]
    end
  end
end
local eid = m[4] or false
if ARGV[3] == '' then return {m[1], m[2], u[1], voided, bind, bound, eid} end
local key = find_key(base, ARGV[3])  -- the portal's tenant key, in the same trip
if not key then return {m[1], m[2], u[1], voided, bind, bound, eid, false} end
return {m[1], m[2], u[1], voided, bind, bound, eid, key[1], key[2], key[3]}
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
# entry, user, link id of a successful sign-in ('' for none), ip ('' for
# none)) for each sign-in of the batch. A tenant deleted (or made again)
# since the clicks gets nothing: their log is gone with it. A successful
# sign-in counts on its link in the ledger.
SIGNINS = (
    APPEND
    + DECLARED
    + """
local inc = redis.call('HGET', KEYS[1], 'incarnation')
if not inc or (ARGV[2] ~= '' and ARGV[2] ~= inc) then return 0 end
if stale(inc) then return '!stale' end
local base = ARGV[1] .. inc .. ':'
local userprefix = base .. 'signins:'
for i = 3, #ARGV, 5 do
  local seq, member = append(base .. 'seq', base .. 'signins', base .. 'signins_at',
    ARGV[i], ARGV[i + 1], userprefix, true)
  local userkey = userprefix .. ARGV[i + 2]
  redis.call('SADD', base .. 'signin_users', ARGV[i + 2])
  redis.call('ZADD', userkey, ARGV[i], member)
  redis.call('ZREMRANGEBYRANK', userkey, 0, -MAX_USER - 1)
  if ARGV[i + 3] ~= '' then
    local record = redis.call('HGET', base .. 'links', ARGV[i + 3])
    if record then
      -- [user, target, reference, issued_by, issued_at, expires_at, epoch,
      --  user_epoch, uses, first_used_at, last_used_at, last_ip]
      local r = cjson.decode(record)
      local at = tonumber(ARGV[i])
      r[9] = r[9] + 1
      if r[10] == cjson.null or at < r[10] then r[10] = at end
      if r[11] == cjson.null or at >= r[11] then
        r[11] = at
        r[12] = ARGV[i + 4] ~= '' and ARGV[i + 4] or cjson.null
      end
      redis.call('HSET', base .. 'links', ARGV[i + 3], cjson.encode(r))
    end
  end
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
# The audit logs are scored by number: their ``at`` set (seq by time) finds
# the old ones. The sign-in log is scored by time (``by_time``); an entry
# written before it was (scored by its number, so far below any time) is
# given its time's score here instead of being dropped for it.
PRUNE_LOG = """
local function prune(log, at, before, batch, userprefix, by_time)
  if by_time then
    local cut = tonumber(string.sub(before, 2))
    local members = redis.call('ZRANGEBYSCORE', log, '-inf', before, 'LIMIT', 0, batch)
    for _, member in ipairs(members) do
      local entry = cjson.decode(member)
      if entry[2] < cut then
        redis.call('ZREM', log, member)
        redis.call('ZREM', at, entry[1])
        if userprefix then redis.call('ZREM', userprefix .. entry[3][1], member) end
      else
        redis.call('ZADD', log, entry[2], member)
      end
    end
    return #members
  end
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
    + DECLARED
    + """
local inc = redis.call('HGET', KEYS[1], 'incarnation')
if not inc then return 0 end
if stale(inc) then return '!stale' end
local base = ARGV[1] .. inc .. ':'
local signins = ARGV[4] == 'signins'
local userprefix = signins and base .. 'signins:' or nil
return prune(base .. ARGV[4], base .. ARGV[4] .. '_at', ARGV[2], ARGV[3], userprefix, signins)
"""
)
# The platform's log. KEYS: audit, audit_at; ARGV: '(' .. before, batch size.
PRUNE_PLATFORM = PRUNE_LOG + "return prune(KEYS[1], KEYS[2], ARGV[1], ARGV[2], nil, false)\n"
PRUNE_BATCH = 500

# The platform's own log. KEYS: seq, audit, audit_at; ARGV: at, actor, action, detail.
PLATFORM_AUDIT = (
    APPEND
    + """
local entry = '[' .. cjson.encode(ARGV[2]) .. ',' .. cjson.encode(ARGV[3]) .. ',' .. ARGV[4] .. ']'
append(KEYS[1], KEYS[2], KEYS[3], ARGV[1], entry, nil, false)
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
    + DECLARED
    + """
local inc = redis.call('HGET', KEYS[1], 'incarnation')
if not inc then return false end
if stale(inc) then return '!stale' end
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
redis.call('HSET', KEYS[9], 'layout', '3', 'legacy_before', ARGV[2])
redis.call('ZADD', KEYS[10], 0, 'default')
return 1
"""

# A link's member of links_by_user: user, NUL, issue time (fixed width, so
# that members sort by it), NUL, link id. _by_user (service/store/redis/layout.py) makes the same.
BY_USER = """
local function by_user(user, issued_at, id)
  return user .. '\\0' .. string.format('%017.6f', issued_at) .. '\\0' .. id
end
"""
# Drop what outlived its link, up to ``budget`` of each: ledger entries past
# their expiry plus a day (``cut_links``), revocations and bindings past
# their own (``cut_now``); both cuts are '(' .. seconds. Answers how many went.
LEDGER_CLEANUP = (
    BY_USER
    + """
-- Within Lua's limit on the arguments of one call (unpack).
local function bulk(command, key, list)
  for first = 1, #list, 4000 do
    redis.call(command, key, unpack(list, first, math.min(first + 3999, #list)))
  end
end
-- A few commands for all of them, not a few a link.
local function cleanup(base, cut_links, cut_now, budget)
  local old = redis.call('ZRANGEBYSCORE', base .. 'links_exp', '-inf', cut_links,
    'LIMIT', 0, budget)
  if #old > 0 then
    local members = {}
    for first = 1, #old, 4000 do
      local last = math.min(first + 3999, #old)
      local records = redis.call('HMGET', base .. 'links', unpack(old, first, last))
      for j = 1, #records do
        if records[j] then
          local r = cjson.decode(records[j])
          members[#members + 1] = by_user(r[1], r[5], old[first + j - 1])
        end
      end
    end
    if #members > 0 then bulk('ZREM', base .. 'links_by_user', members) end
    bulk('HDEL', base .. 'links', old)
    bulk('ZREM', base .. 'links_at', old)
    bulk('ZREM', base .. 'links_exp', old)
  end
  local removed = #old
  for _, name in ipairs({'voided', 'bound'}) do
    local gone = redis.call('ZRANGEBYSCORE', base .. name .. '_exp', '-inf', cut_now,
      'LIMIT', 0, budget)
    if #gone > 0 then
      bulk('HDEL', base .. name, gone)
      bulk('ZREM', base .. name .. '_exp', gone)
    end
    removed = removed + #gone
  end
  return removed
end
"""
)
# New links into the ledger, and a bounded cleanup. ARGV: base, the
# incarnation they were issued in, cut_links, cut_now, budget, then one JSON
# array of [link id, issued_at, expires_at, record JSON, member of
# links_by_user] for each link (one argument, not five a link: the client's
# cost of a batch was in preparing 5,000 arguments). A call repeated (a
# retry after a lost reply) writes the same again: no token of the batch
# has reached anyone yet, so no click has changed a record. One command per structure
# for the whole batch (HSET and ZADD take many members), not one or more
# per link: a command per link (into a sorted set per user) was most of the
# cost of a batch of 1000.
RECORD_LINKS = (
    LEDGER_CLEANUP
    + DECLARED
    + """
local inc = redis.call('HGET', KEYS[1], 'incarnation')
if not inc or inc ~= ARGV[2] then return 0 end
if stale(inc) then return '!stale' end
local base = ARGV[1] .. inc .. ':'
local links = cjson.decode(ARGV[6])
local records, at, exp, users = {}, {}, {}, {}
for _, link in ipairs(links) do
  local id = link[1]
  records[#records + 1] = id
  records[#records + 1] = link[4]
  at[#at + 1] = link[2]
  at[#at + 1] = id
  exp[#exp + 1] = link[3]
  exp[#exp + 1] = id
  users[#users + 1] = 0
  users[#users + 1] = link[5]
end
if #records > 0 then
  bulk('HSET', base .. 'links', records)
  bulk('ZADD', base .. 'links_at', at)
  bulk('ZADD', base .. 'links_exp', exp)
  bulk('ZADD', base .. 'links_by_user', users)
end
cleanup(base, ARGV[3], ARGV[4], tonumber(ARGV[5]))
return 1
"""
)
# A tenant's cleanup alone (pruning). ARGV: base, cut_links, cut_now, budget.
CLEAN_LEDGER = (
    LEDGER_CLEANUP
    + DECLARED
    + """
local inc = redis.call('HGET', KEYS[1], 'incarnation')
if not inc then return 0 end
if stale(inc) then return '!stale' end
return cleanup(ARGV[1] .. inc .. ':', ARGV[2], ARGV[3], tonumber(ARGV[4]))
"""
)
# A ledger entry with its status as a verification would answer now.
LINK_STATUS = """
local function link_status(base, epoch, eid, id, expired_before)
  local record = redis.call('HGET', base .. 'links', id)
  if not record then return nil end
  local r = cjson.decode(record)
  local status = 'active'
  if r[6] < expired_before then
    status = 'expired'
  elseif r[7] ~= epoch or (r[13] or 0) ~= eid
      or r[8] ~= tonumber(redis.call('HGET', base .. 'user_epochs', r[1]) or '0')
      or redis.call('HEXISTS', base .. 'voided', id) == 1 then
    status = 'revoked'
  end
  return {id, record, status, redis.call('HEXISTS', base .. 'bound', id)}
end
"""
# A page of the ledger, newest first. ARGV: base, user ('' for every
# user's), after ('' for the first page), limit, status ('' for any),
# expired_before, most entries to look at. Answers {next or false, then id,
# record, status, bound for each link}, or '!no-link' for an unknown after.
# Every user's links are read from links_at by rank; one user's from
# links_by_user: that user's members, from the newest down.
LINKS_PAGE = (
    LINK_STATUS
    + BY_USER
    + DECLARED
    + """
local m = redis.call('HMGET', KEYS[1], 'incarnation', 'epoch', 'epoch_id')
if not m[1] then return '!no-tenant' end
if stale(m[1]) then return '!stale' end
local base = ARGV[1] .. m[1] .. ':'
local epoch, eid, user = tonumber(m[2]), tonumber(m[3] or '0'), ARGV[2]
-- The position: a rank in links_at, or the member of links_by_user to go on below.
local start, below, floor = 0, '(' .. user .. '\\1', '[' .. user .. '\\0'
if ARGV[3] ~= '' then
  if user == '' then
    local rank = redis.call('ZREVRANK', base .. 'links_at', ARGV[3])
    if not rank then return '!no-link' end
    start = rank + 1
  else
    -- Any link of the tenant marks a place in the order (as on SQLite).
    local record = redis.call('HGET', base .. 'links', ARGV[3])
    if not record then return '!no-link' end
    below = '(' .. by_user(user, cjson.decode(record)[5], ARGV[3])
  end
end
-- Up to ``count`` more entries from the position: link ids, or members.
local function more(count)
  if user == '' then
    return redis.call('ZREVRANGE', base .. 'links_at', start, start + count - 1)
  end
  return redis.call('ZREVRANGEBYLEX', base .. 'links_by_user', below, floor, 'LIMIT', 0, count)
end
local limit, expired_before, budget = tonumber(ARGV[4]), tonumber(ARGV[6]), tonumber(ARGV[7])
local found, scanned, last = {}, 0, false
while #found <= limit and scanned < budget do
  local entries = more(100)
  if #entries == 0 then break end
  for _, entry in ipairs(entries) do
    local id = entry
    if user == '' then
      start = start + 1
    else
      id, below = string.sub(entry, #user + 20), '(' .. entry
    end
    scanned, last = scanned + 1, id
    local link = link_status(base, epoch, eid, id, expired_before)
    if link and (ARGV[5] == '' or ARGV[5] == link[3]) then found[#found + 1] = link end
    if #found > limit or scanned >= budget then break end
  end
end
local out = {false}
for i = 1, math.min(#found, limit) do
  for _, v in ipairs(found[i]) do out[#out + 1] = v end
end
if #found > limit then
  out[1] = found[limit][1]
elseif scanned >= budget and #more(1) > 0 then
  out[1] = last  -- looked at enough for one call: the next page goes on from here
end
return out
"""
)
# One ledger entry. ARGV: base, link id, expired_before.
LINK = (
    LINK_STATUS
    + DECLARED
    + """
local m = redis.call('HMGET', KEYS[1], 'incarnation', 'epoch', 'epoch_id')
if not m[1] then return '!no-tenant' end
if stale(m[1]) then return '!stale' end
return link_status(ARGV[1] .. m[1] .. ':', tonumber(m[2]), tonumber(m[3] or '0'), ARGV[2],
  tonumber(ARGV[3])) or false
"""
)
# Void one link. ARGV: base, link id, ledger ('1' or '0'), now, keep until
# (without the ledger), leeway, actor, reason. Answers 'ok', 'expired' (with
# the ledger: nothing stored) or '!no-link'.
REVOKE_LINK = (
    AUDIT
    + """
local inc, base = tenant()
if not inc then return base end
local keep, user = tonumber(ARGV[5]), nil
if ARGV[3] == '1' then
  local record = redis.call('HGET', base .. 'links', ARGV[2])
  if not record then return '!no-link' end
  local r = cjson.decode(record)
  keep, user = r[6] + tonumber(ARGV[6]), r[1]
  if keep < tonumber(ARGV[4]) then return 'expired' end
end
local old = tonumber(redis.call('ZSCORE', base .. 'voided_exp', ARGV[2]) or '0')
if old > keep then keep = old end
redis.call('HSET', base .. 'voided', ARGV[2], ARGV[4])
redis.call('ZADD', base .. 'voided_exp', keep, ARGV[2])
local detail = '{"link_id": ' .. cjson.encode(ARGV[2]) .. ', "reason": ' .. cjson.encode(ARGV[8])
if user then detail = detail .. ', "user_id": ' .. cjson.encode(user) end
audit(base, ARGV[4], ARGV[7], 'link.revoke', detail .. '}')
return 'ok'
"""
)

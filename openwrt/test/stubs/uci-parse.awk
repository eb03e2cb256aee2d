# Test double support: turns an OpenWrt UCI config file into the shell variables that
# OpenWrt's config_load sets (CONFIG_<section>_<option>, lists as _ITEMn/_LENGTH and the
# space-joined value). Handles the subset our files use: config/option/list, quotes, comments.
function unquote(v) {
    sub(/^[ \t]+/, "", v); sub(/[ \t]+$/, "", v)
    if (v ~ /^'.*'$/ || v ~ /^".*"$/) v = substr(v, 2, length(v) - 2)
    return v
}
function shq(v) { gsub(/'/, "'\\''", v); return "'" v "'" }
/^[ \t]*(#|$)/ { next }
$1 == "config" {
    n++
    rest = $0; sub(/^[ \t]*config[ \t]+[^ \t]+[ \t]*/, "", rest)
    sec = unquote(rest)
    if (sec == "") sec = "cfg" n
    print "CONFIG_" sec "_TYPE=" shq($2)
    print "CONFIG_SECTIONS=\"${CONFIG_SECTIONS:+$CONFIG_SECTIONS }" sec "\""
    next
}
$1 == "option" || $1 == "list" {
    key = $2
    rest = $0; sub(/^[ \t]*(option|list)[ \t]+[^ \t]+[ \t]*/, "", rest)
    val = unquote(rest)
    if ($1 == "option") { print "CONFIG_" sec "_" key "=" shq(val); next }
    cnt[sec, key]++
    print "CONFIG_" sec "_" key "_ITEM" cnt[sec, key] "=" shq(val)
    print "CONFIG_" sec "_" key "_LENGTH=" cnt[sec, key]
    joined[sec, key] = (cnt[sec, key] > 1 ? joined[sec, key] " " : "") val
    print "CONFIG_" sec "_" key "=" shq(joined[sec, key])
}

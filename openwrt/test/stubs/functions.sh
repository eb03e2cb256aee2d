# Test double of OpenWrt's /lib/functions.sh: the config_* helpers sdwan-agent's init script
# uses, with OpenWrt's semantics, reading /etc/config/<name> through uci-parse.awk.
config_load() {
	CONFIG_SECTIONS=
	[ -f "/etc/config/$1" ] || return 1
	eval "$(awk -f /lib/uci-parse.awk "/etc/config/$1")"
}

# config_get VAR SECTION OPTION [DEFAULT]  or  config_get SECTION OPTION (prints)
config_get() {
	case $# in
	2) eval "echo \"\${CONFIG_${1}_${2}:-}\"" ;;
	*) eval "export -- \"${1}=\${CONFIG_${2}_${3}:-\${4}}\"" ;;
	esac
}

config_get_bool() {
	local _tmp
	config_get _tmp "$2" "$3" "$4"
	case "$_tmp" in
	1 | on | true | yes | enabled) _tmp=1 ;;
	0 | off | false | no | disabled) _tmp=0 ;;
	*) _tmp="$4" ;;
	esac
	export -- "$1=$_tmp"
}

config_list_foreach() {
	local section="$1" option="$2" function="$3" len val c=1
	shift 3
	config_get len "$section" "${option}_LENGTH"
	[ -n "$len" ] || return 0
	while [ "$c" -le "$len" ]; do
		config_get val "$section" "${option}_ITEM$c"
		eval "$function \"\$val\" \"\$@\""
		c=$((c + 1))
	done
}

# Test double of OpenWrt's /lib/functions/procd.sh: records the instance that start_service
# describes into /tmp/procd/ (command: one argument per line; other params: one file each),
# so the test can start the agent exactly as procd would.
PROCD_DIR=/tmp/procd

procd_open_instance() {
	rm -rf "$PROCD_DIR/instance"
	mkdir -p "$PROCD_DIR/instance"
	: >"$PROCD_DIR/instance/command"
}

procd_set_param() {
	local key="$1"
	shift
	if [ "$key" = command ]; then
		: >"$PROCD_DIR/instance/command"
		procd_append_param command "$@"
	else
		printf '%s\n' "$*" >"$PROCD_DIR/instance/$key"
	fi
}

procd_append_param() {
	local key="$1" arg
	shift
	if [ "$key" = command ]; then
		for arg in "$@"; do printf '%s\n' "$arg" >>"$PROCD_DIR/instance/command"; done
	else
		printf '%s\n' "$*" >>"$PROCD_DIR/instance/$key"
	fi
}

procd_close_instance() { touch "$PROCD_DIR/instance/closed"; }
procd_add_jail() { printf '%s\n' "$*" >"$PROCD_DIR/instance/jail"; }
procd_add_jail_mount() { printf '%s\n' "$@" >>"$PROCD_DIR/instance/jail_mount"; }
procd_add_jail_mount_rw() { printf '%s\n' "$@" >>"$PROCD_DIR/instance/jail_mount_rw"; }
procd_add_reload_trigger() { mkdir -p "$PROCD_DIR"; printf '%s\n' "$@" >>"$PROCD_DIR/reload_triggers"; }

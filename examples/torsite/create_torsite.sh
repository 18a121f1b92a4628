#!/usr/bin/env bash
# create_torsite.sh: publish a static web site as a persistent Tor v3 onion
# service served by nginx. A separate utility of the ghostcomm project; it is
# not part of the library's message flow. See README.md next to this file.
#
# Run with --help for usage, options, environment variables and exit codes.
set -euo pipefail

readonly PROG=${0##*/}

# Exit codes (documented in usage()).
readonly E_OK=0 E_FAIL=1 E_USAGE=2 E_DEP=3 E_PERM=4 E_PORT=5 E_TAKEN=6 E_INVALID=7 E_RELOAD=8 E_TIMEOUT=9

readonly MARK=ghostcomm-torsite

usage() {
	cat <<EOF
Usage: $PROG [options] NAME PORT [WEBROOT]
       $PROG [options] --remove NAME
       $PROG --help

Publish a static web site as a persistent Tor v3 onion service:
  - adds to the torrc, between "# BEGIN $MARK NAME" / "# END $MARK NAME":
        HiddenServiceDir DATADIR/NAME
        HiddenServicePort 80 127.0.0.1:PORT
  - writes an nginx server block listening on 127.0.0.1:PORT only
    (NGINX_AVAILABLE/torsite-NAME.conf, linked from NGINX_ENABLED);
  - validates both configurations, rolls all its edits back if either fails;
  - reloads nginx, then tor; waits for DATADIR/NAME/hostname and prints the
    .onion address as the last line of stdout (progress goes to stderr).
Running it twice with the same arguments changes nothing. The torrc is backed
up once, before its first edit, to TORRC.ghostcomm.bak (never overwritten).
The script never starts tor or nginx itself: the reload commands do.

Arguments:
  NAME     site name: 1-63 characters of [a-z0-9_-], starting with [a-z0-9]
  PORT     local TCP port nginx listens on (127.0.0.1 only), 1-65535;
           must be free unless it is already this site's port
  WEBROOT  existing directory to serve, used as is and never deleted.
           Default: WWW_DIR/NAME, created with a generated index.html
           (an existing index.html there is kept)

Options (each also settable by the environment variable shown; a flag wins):
  --torrc FILE           torrc to edit              TORSITE_TORRC      [/etc/tor/torrc]
  --tor-data-dir DIR     parent of the HiddenServiceDirs
                                                    TORSITE_TOR_DATA_DIR [/var/lib/tor]
  --tor-defaults FILE    defaults torrc used to verify the torrc
                                                    TORSITE_TOR_DEFAULTS [an empty file]
                         Debian's service runs tor with
                         /usr/share/tor/tor-service-defaults-torrc: pass it to
                         verify exactly what the service loads
  --tor-reload CMD       reloads tor (bash -c)      TORSITE_TOR_RELOAD [systemctl reload tor]
  --nginx-available DIR  where server blocks are written
                                                    TORSITE_NGINX_AVAILABLE [/etc/nginx/sites-available]
  --nginx-enabled DIR    where they are linked from TORSITE_NGINX_ENABLED [/etc/nginx/sites-enabled]
                         (same as --nginx-available: the file is written there, no link)
  --nginx-test CMD       validates nginx (bash -c)  TORSITE_NGINX_TEST [nginx -t -q]
                         e.g. "nginx -p /srv/ng -c /srv/ng/nginx.conf -t -q"
  --nginx-reload CMD     reloads nginx (bash -c)    TORSITE_NGINX_RELOAD [systemctl reload nginx]
  --www-dir DIR          parent of generated web roots
                                                    TORSITE_WWW_DIR    [/var/www/torsite]
  --timeout SECONDS      how long to wait for the hostname file
                                                    TORSITE_TIMEOUT    [60]
  --remove NAME          undo NAME: torrc block, nginx block and link; validate;
                         reload. The onion keys in DATADIR/NAME are kept (the same
                         address comes back if NAME is created again); delete that
                         directory yourself to retire the address for good.
                         Removing a NAME that is not configured succeeds and does nothing.
  --delete-root          with --remove: also delete the web root this script
                         generated (its index.html only if unchanged, then the
                         directory only if empty). A WEBROOT you gave is never deleted.
  --dry-run              check everything, print what would change, change nothing
                         (configurations are not validated, nothing is reloaded)
  -h, --help             this help

Only the files named above are written: the torrc (and its .ghostcomm.bak),
the nginx server block and its link, and a generated web root. Nothing is
written until every check has passed. Copies kept for a rollback live in a
private directory under \$TMPDIR (or /tmp), removed on exit.

Requires: bash 5, tor and nginx on PATH (to validate), coreutils; uses ss
(iproute2) and flock (util-linux) when present. Editing a system install
needs root.

Exit codes:
  $E_OK  success (the address is the last line of stdout when creating)
  $E_FAIL  unexpected error (message on stderr)
  $E_USAGE  usage error: unknown option, invalid NAME, PORT or path, missing file or directory
  $E_DEP  missing dependency (tor, nginx, a core utility)
  $E_PERM  no permission to read or write one of the files
  $E_PORT  PORT in use on 127.0.0.1, or used by another torsite
  $E_TAKEN  NAME already taken: configured with another port or web root, or
     DATADIR/NAME exists and is not this site's onion service directory
  $E_INVALID  tor or nginx rejected the new configuration; every edit was rolled back
  $E_RELOAD  a reload command failed (the configuration is valid and stays in place)
  $E_TIMEOUT  the hostname file did not appear within the timeout
EOF
}

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
	local code=$1
	shift
	log "error: $*"
	exit "$code"
}

# ---------------------------------------------------------------- arguments --

torrc=${TORSITE_TORRC:-/etc/tor/torrc}
datadir=${TORSITE_TOR_DATA_DIR:-/var/lib/tor}
tor_defaults=${TORSITE_TOR_DEFAULTS:-}
tor_reload=${TORSITE_TOR_RELOAD:-systemctl reload tor}
ng_avail=${TORSITE_NGINX_AVAILABLE:-/etc/nginx/sites-available}
ng_enabled=${TORSITE_NGINX_ENABLED:-/etc/nginx/sites-enabled}
ng_test=${TORSITE_NGINX_TEST:-nginx -t -q}
ng_reload=${TORSITE_NGINX_RELOAD:-systemctl reload nginx}
www_dir=${TORSITE_WWW_DIR:-/var/www/torsite}
timeout=${TORSITE_TIMEOUT:-60}
mode=create
dry_run=0
delete_root=0
name='' port='' webroot=''

need_arg() { [ "$#" -ge 2 ] || die "$E_USAGE" "option $1 needs a value (see --help)"; }

positional=()
while [ "$#" -gt 0 ]; do
	case $1 in
	-h | --help)
		usage
		exit "$E_OK"
		;;
	--torrc) need_arg "$@"; torrc=$2; shift ;;
	--tor-data-dir) need_arg "$@"; datadir=$2; shift ;;
	--tor-defaults) need_arg "$@"; tor_defaults=$2; shift ;;
	--tor-reload) need_arg "$@"; tor_reload=$2; shift ;;
	--nginx-available) need_arg "$@"; ng_avail=$2; shift ;;
	--nginx-enabled) need_arg "$@"; ng_enabled=$2; shift ;;
	--nginx-test) need_arg "$@"; ng_test=$2; shift ;;
	--nginx-reload) need_arg "$@"; ng_reload=$2; shift ;;
	--www-dir) need_arg "$@"; www_dir=$2; shift ;;
	--timeout) need_arg "$@"; timeout=$2; shift ;;
	--remove) need_arg "$@"; mode=remove; name=$2; shift ;;
	--delete-root) delete_root=1 ;;
	--dry-run) dry_run=1 ;;
	--) shift; positional+=("$@"); break ;;
	-*) die "$E_USAGE" "unknown option: $1 (see --help)" ;;
	*) positional+=("$1") ;;
	esac
	shift
done

if [ "$mode" = remove ]; then
	[ "${#positional[@]}" -eq 0 ] || die "$E_USAGE" "--remove takes only NAME (got extra: ${positional[*]})"
else
	[ "$delete_root" -eq 0 ] || die "$E_USAGE" "--delete-root only goes with --remove"
	case ${#positional[@]} in
	2 | 3) ;;
	*) die "$E_USAGE" "expected NAME PORT [WEBROOT] (see --help)" ;;
	esac
	name=${positional[0]}
	port=${positional[1]}
	webroot=${positional[2]:-}
fi

# ---------------------------------------------------------------- validation --

[[ $name =~ ^[a-z0-9][a-z0-9_-]{0,62}$ ]] ||
	die "$E_USAGE" "invalid name '$name': use 1-63 characters of [a-z0-9_-], starting with [a-z0-9]"
# Names tor itself uses inside its DataDirectory.
case $name in
keys | lock | state | sr-state | stats | diff-cache | cached-* | fingerprint* | hashed-fingerprint | \
	key-pinning-journal | router-stability | bw_accounting | control_auth_cookie | unverified-* | v3-status-votes | approved-routers)
	die "$E_USAGE" "invalid name '$name': tor uses that name in its data directory" ;;
esac
if [ "$mode" = create ]; then
	{ [[ $port =~ ^[1-9][0-9]{0,4}$ ]] && [ "$port" -le 65535 ]; } ||
		die "$E_USAGE" "invalid port '$port': use a number from 1 to 65535"
fi
{ [[ $timeout =~ ^[0-9]+$ ]] && [ "$timeout" -ge 1 ]; } ||
	die "$E_USAGE" "invalid --timeout '$timeout': use a whole number of seconds, at least 1"

for cmd in tor nginx mktemp cp mv rm chmod chown ln mkdir rmdir readlink sleep; do
	command -v "$cmd" >/dev/null 2>&1 || die "$E_DEP" "missing dependency: '$cmd' not found on PATH"
done
[ "${BASH_VERSINFO[0]}" -ge 5 ] || die "$E_DEP" "bash 5 or newer needed (this is $BASH_VERSION)"

# Paths end up unquoted in torrc and nginx configuration: keep them plain.
safe_path() { [[ $1 =~ ^/[A-Za-z0-9._/+@,-]*$ ]] && [[ ! $1 =~ (^|/)\.\.?(/|$) ]]; }

# absdir WHAT PATH: prints the resolved absolute path of an existing directory.
absdir() {
	[ -d "$2" ] || die "$E_USAGE" "$1 '$2' is not an existing directory"
	local p
	p=$(readlink -f -- "$2") || die "$E_USAGE" "$1 '$2' cannot be resolved"
	safe_path "$p" || die "$E_USAGE" "$1 '$p': only [A-Za-z0-9._/+@,-] are allowed in paths"
	printf '%s\n' "$p"
}

[ -f "$torrc" ] || die "$E_USAGE" "torrc '$torrc' does not exist (see --torrc)"
torrc=$(readlink -f -- "$torrc")
[ -r "$torrc" ] || die "$E_PERM" "no permission to read $torrc"
datadir=$(absdir "tor data directory (--tor-data-dir)" "$datadir")
ng_avail=$(absdir "nginx sites directory (--nginx-available)" "$ng_avail")
ng_enabled=$(absdir "nginx enabled-sites directory (--nginx-enabled)" "$ng_enabled")
if [ -n "$tor_defaults" ]; then
	{ [ -f "$tor_defaults" ] && [ -r "$tor_defaults" ]; } || die "$E_USAGE" "tor defaults file '$tor_defaults' is not a readable file"
fi
case $www_dir in
/*) safe_path "$www_dir" || die "$E_USAGE" "--www-dir '$www_dir': only [A-Za-z0-9._/+@,-] are allowed in paths" ;;
*) die "$E_USAGE" "--www-dir '$www_dir' must be an absolute path" ;;
esac

hsdir=$datadir/$name
ng_file=$ng_avail/torsite-$name.conf
ng_link=$ng_enabled/torsite-$name.conf
[ "$ng_avail" = "$ng_enabled" ] && ng_link=
backup=$torrc.ghostcomm.bak
begin_marker="# BEGIN $MARK $name"
end_marker="# END $MARK $name"

# ---------------------------------------------------------------- work area --

work=$(mktemp -d "${TMPDIR:-/tmp}/torsite.XXXXXX")
committed=0
keep_work=0     # set when a rollback failed: the saved copies are then kept
journal=()      # "f<TAB>path<TAB>saved-copy-or-empty" or "d<TAB>path" entries, in order
pending_tmp=    # a temporary file inside a target directory, if one is being written

rollback() {
	local i kind path saved
	for ((i = ${#journal[@]} - 1; i >= 0; i--)); do
		IFS=$'\t' read -r kind path saved <<<"${journal[i]}"
		case $kind in
		f)
			rm -f -- "$path" || log "rollback: could not remove $path"
			if [ -n "$saved" ]; then
				if ! cp -a -- "$saved" "$path"; then
					log "rollback: could not restore $path; its previous content is kept in $saved"
					keep_work=1
				fi
			fi
			;;
		d) rmdir -- "$path" 2>/dev/null || log "rollback: left directory $path (not empty)" ;;
		esac
	done
	journal=()
}

cleanup() {
	local rc=$?
	[ -z "$pending_tmp" ] || rm -f -- "$pending_tmp"
	if [ "$committed" -eq 0 ] && [ "${#journal[@]}" -gt 0 ]; then
		log "rolling back"
		rollback
	fi
	[ "$keep_work" -eq 1 ] || rm -rf -- "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# journal_file PATH: remember PATH's current state so rollback can restore it.
journal_file() {
	local saved=
	if [ -e "$1" ] || [ -L "$1" ]; then
		saved=$work/saved.${#journal[@]}
		cp -a -- "$1" "$saved"
	fi
	journal+=("f"$'\t'"$1"$'\t'"$saved")
}

# put_file PATH CONTENT [MODE]: atomically replace PATH with CONTENT (journaled).
# An existing file keeps its mode and owner; a new one gets MODE (default 0644).
put_file() {
	local path=$1 content=$2 mode=${3:-0644}
	journal_file "$path"
	pending_tmp=$(mktemp "${path%/*}/.torsite.XXXXXX")
	printf '%s' "$content" >"$pending_tmp"
	if [ -e "$path" ]; then
		chmod --reference="$path" -- "$pending_tmp"
		chown --reference="$path" -- "$pending_tmp" 2>/dev/null || true
	else
		chmod "$mode" -- "$pending_tmp"
	fi
	mv -f -- "$pending_tmp" "$path"
	pending_tmp=
}

# backup_once: copies the torrc to its .ghostcomm.bak unless that exists. The
# copy is journaled, so a run that is rolled back leaves no backup behind.
backup_once() {
	[ ! -e "$backup" ] || return 0
	journal_file "$backup"
	cp -p -- "$torrc" "$backup"
	log "backed up $torrc to $backup"
}

# del_file PATH: remove PATH (journaled).
del_file() {
	journal_file "$1"
	rm -f -- "$1"
}

# ------------------------------------------------------------------ helpers --

# read_into VAR FILE: sets VAR to FILE's exact bytes (no NUL expected),
# trailing newlines included.
read_into() {
	local __ri=''
	IFS= read -r -d '' __ri <"$2" || true
	printf -v "$1" '%s' "$__ri"
}

# torrc_scan: checks the markers and prints one line per torsite block:
# "NAME<TAB>PORT<TAB>HSDIR". Also fails on a HiddenServiceDir outside the
# blocks that points at this site's directory.
torrc_scan() {
	local line inb='' n=0 bname bport bdir
	while IFS= read -r line || [ -n "$line" ]; do
		n=$((n + 1))
		if [[ $line =~ ^#\ BEGIN\ $MARK\ ([a-z0-9_-]+)$ ]]; then
			[ -z "$inb" ] || die "$E_FAIL" "$torrc:$n: nested '$MARK' block; fix the file by hand (backup: $backup)"
			inb=${BASH_REMATCH[1]} bport='' bdir=''
		elif [[ $line =~ ^#\ END\ $MARK\ ([a-z0-9_-]+)$ ]]; then
			[ "${BASH_REMATCH[1]}" = "$inb" ] || die "$E_FAIL" "$torrc:$n: unmatched '$line'; fix the file by hand"
			printf '%s\t%s\t%s\n' "$inb" "$bport" "$bdir"
			inb=
		elif [ -n "$inb" ]; then
			if [[ $line =~ ^HiddenServiceDir\ (.+)$ ]]; then
				bdir=${BASH_REMATCH[1]}
			elif [[ $line =~ ^HiddenServicePort\ 80\ 127\.0\.0\.1:([0-9]+)$ ]]; then
				bport=${BASH_REMATCH[1]}
			fi
		elif [[ $line =~ ^[[:space:]]*HiddenServiceDir[[:space:]]+(.+[^[:space:]])[[:space:]]*$ ]]; then
			bdir=${BASH_REMATCH[1]}
			bdir=${bdir%/}
			[ "$bdir" != "$hsdir" ] ||
				die "$E_TAKEN" "name '$name' taken: $torrc:$n already has 'HiddenServiceDir $hsdir' outside a $MARK block"
		fi
	done <"$torrc"
	[ -z "$inb" ] || die "$E_FAIL" "$torrc: '# BEGIN $MARK $inb' has no END line; fix the file by hand (backup: $backup)"
}

# torrc_without_block: prints the torrc without this site's block.
torrc_without_block() {
	local line inb=0
	while IFS= read -r line || [ -n "$line" ]; do
		if [ "$line" = "$begin_marker" ]; then
			inb=1
		elif [ "$inb" -eq 1 ]; then
			[ "$line" != "$end_marker" ] || inb=0
		else
			printf '%s\n' "$line"
		fi
	done <"$torrc"
}

# torrc_block: prints this site's block of the torrc.
torrc_block() {
	local line inb=0
	while IFS= read -r line || [ -n "$line" ]; do
		[ "$line" != "$begin_marker" ] || inb=1
		[ "$inb" -eq 0 ] || printf '%s\n' "$line"
		[ "$line" != "$end_marker" ] || inb=0
	done <"$torrc"
}

# nginx_meta FILE: prints "PORT<TAB>GENERATED<TAB>ROOT" from a server block
# this script wrote, or nothing.
nginx_meta() {
	local line
	[ -f "$1" ] || return 0
	while IFS= read -r line; do
		if [[ $line =~ ^#\ $MARK\ name=([a-z0-9_-]+)\ port=([0-9]+)\ generated=(yes|no)\ root=(.+)$ ]]; then
			printf '%s\t%s\t%s\n' "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}" "${BASH_REMATCH[4]}"
			return 0
		fi
	done <"$1"
}

# port_in_use PORT: whether something listens where 127.0.0.1:PORT would bind.
port_in_use() {
	local p=$1 out _s _r _q local_addr _rest
	if command -v ss >/dev/null 2>&1; then
		out=$(ss -H -l -t -n "sport = :$p") || die "$E_FAIL" "ss failed while checking port $p"
		while read -r _s _r _q local_addr _rest; do
			case $local_addr in
			"127.0.0.1:$p" | "0.0.0.0:$p" | "*:$p" | "[::]:$p" | "[::ffff:127.0.0.1]:$p" | 127.0.0.1%*":$p" | 0.0.0.0%*":$p")
				return 0 ;;
			esac
		done <<<"$out"
		return 1
	fi
	# No ss: try to connect; a listener answers.
	(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null
}

# can_write_into DIR: whether a file can be created in DIR (or, if DIR does
# not exist yet, in its nearest existing ancestor).
can_write_into() {
	local d=$1
	while [ ! -e "$d" ]; do d=${d%/*}; [ -n "$d" ] || d=/; done
	[ -d "$d" ] && [ -w "$d" ] && [ -x "$d" ]
}

check_writable() {
	{ [ -w "$torrc" ] && can_write_into "${torrc%/*}"; } ||
		die "$E_PERM" "no permission to write $torrc (and a new file beside it)"
	can_write_into "$ng_avail" || die "$E_PERM" "no permission to write in $ng_avail"
	[ -z "$ng_link" ] || can_write_into "$ng_enabled" || die "$E_PERM" "no permission to write in $ng_enabled"
}

index_html() {
	cat <<EOF
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<title>$name</title>
</head>
<body>
<h1>$name</h1>
<p>This onion site is served by nginx, published with ghostcomm's create_torsite.sh.</p>
</body>
</html>
EOF
}

# tail_lines TEXT: the last 15 non-empty lines of TEXT to stderr; of tor's
# log lines, only warnings and errors.
tail_lines() {
	local lines=() l
	while IFS= read -r l; do
		[[ -n $l && ! $l =~ \[(notice|info|debug)\] ]] || continue
		lines+=("$l")
	done <<<"$1"
	[ "${#lines[@]}" -gt 0 ] || return 0
	l=$((${#lines[@]} > 15 ? ${#lines[@]} - 15 : 0))
	printf '  %s\n' "${lines[@]:l}" >&2
}

verify_configs() {
	local defaults=$tor_defaults out
	if [ -z "$defaults" ]; then
		defaults=$work/empty-defaults-torrc
		: >"$defaults"
	fi
	if ! out=$(tor --verify-config --defaults-torrc "$defaults" -f "$torrc" 2>&1); then
		log "tor rejected the configuration:"
		tail_lines "$out"
		die "$E_INVALID" "tor --verify-config failed; all edits rolled back"
	fi
	if ! out=$(bash -c "$ng_test" 2>&1); then
		log "nginx rejected the configuration ($ng_test):"
		tail_lines "$out"
		die "$E_INVALID" "nginx configuration test failed; all edits rolled back"
	fi
}

reload_all() {
	unlock
	log "reloading nginx: $ng_reload"
	bash -c "$ng_reload" >&2 || die "$E_RELOAD" "nginx reload failed: $ng_reload"
	log "reloading tor: $tor_reload"
	bash -c "$tor_reload" >&2 || die "$E_RELOAD" "tor reload failed: $tor_reload"
}

# lock: takes an exclusive flock on the torrc's directory (held until
# unlock or exit), so two runs on the same torrc do not interleave.
lock_fd=''
lock() {
	command -v flock >/dev/null 2>&1 || return 0
	local dir=${torrc%/*}
	{ exec {lock_fd}<"$dir"; } 2>/dev/null || die "$E_PERM" "no permission to open $dir"
	flock -w 60 "$lock_fd" || die "$E_FAIL" "another $PROG holds the lock on $dir for more than 60 s"
}

# unlock: releases the lock, so that no process started by a reload command
# inherits it.
unlock() {
	[ -n "$lock_fd" ] || return 0
	exec {lock_fd}<&-
	lock_fd=''
}

show() { # show TITLE CONTENT
	printf '%s\n' "--- $1" "$2"
	[[ $2 == *$'\n' ]] || printf '\n'
}

# ------------------------------------------------------------------- remove --

do_remove() {
	local scan meta torrc_has=0 ng_port='' ng_gen=no ng_root=''
	scan=$(torrc_scan)
	[[ $'\n'$scan == *$'\n'"$name"$'\t'* ]] && torrc_has=1
	meta=$(nginx_meta "$ng_file")
	[ -z "$meta" ] || IFS=$'\t' read -r ng_port ng_gen ng_root <<<"$meta"
	if [ "$torrc_has" -eq 0 ] && [ -z "$meta" ] && { [ -z "$ng_link" ] || [ ! -L "$ng_link" ]; }; then
		log "'$name' is not configured; nothing to remove"
		return 0
	fi

	local index=$ng_root/index.html del_index=0 del_dir=0
	if [ "$delete_root" -eq 1 ]; then
		if [ "$ng_gen" = yes ] && [ -d "$ng_root" ]; then
			local have=''
			[ ! -f "$index" ] || read_into have "$index"
			if [ -f "$index" ] && [ "$have" = "$(index_html)"$'\n' ]; then del_index=1; fi
			[ -f "$index" ] && [ "$del_index" -eq 0 ] && log "keeping $index: it was changed since it was generated"
			del_dir=1
		else
			log "--delete-root: no generated web root recorded for '$name'; nothing to delete"
		fi
	fi

	if [ "$dry_run" -eq 1 ]; then
		[ "$torrc_has" -eq 0 ] || show "would remove from $torrc" "$(torrc_block)"
		[ -z "$meta" ] || printf '%s\n' "--- would delete $ng_file"
		[ -z "$ng_link" ] || [ ! -L "$ng_link" ] || printf '%s\n' "--- would delete link $ng_link"
		[ "$del_index" -eq 0 ] || printf '%s\n' "--- would delete $index"
		[ "$del_dir" -eq 0 ] || printf '%s\n' "--- would delete directory $ng_root if empty"
		printf '%s\n' "--- would verify: tor --verify-config -f $torrc; $ng_test" \
			"--- would run: $ng_reload" "--- would run: $tor_reload" \
			"--- would keep the onion keys in $hsdir"
		return 0
	fi

	check_writable
	[ "$torrc_has" -eq 0 ] || backup_once
	if [ "$torrc_has" -eq 1 ]; then
		local t
		t=$(torrc_without_block; printf x) # the x keeps trailing newlines
		put_file "$torrc" "${t%x}"
	fi
	[ -z "$ng_link" ] || { [ ! -L "$ng_link" ] && [ ! -e "$ng_link" ]; } || del_file "$ng_link"
	[ ! -e "$ng_file" ] || del_file "$ng_file"
	verify_configs
	committed=1
	if [ "$del_index" -eq 1 ]; then rm -f -- "$index"; fi
	if [ "$del_dir" -eq 1 ]; then
		if rmdir -- "$ng_root" 2>/dev/null; then
			log "deleted generated web root $ng_root"
		else
			log "kept $ng_root: not empty"
		fi
	fi
	reload_all
	log "removed '$name'; onion keys kept in $hsdir"
}

# ------------------------------------------------------------------- create --

do_create() {
	local scan bname bport bdir meta generated=no root ng_port='' ng_gen='' ng_root=''
	if [ -n "$webroot" ]; then
		root=$(absdir "web root" "$webroot")
	else
		root=$www_dir/$name
		generated=yes
	fi

	# What is there already?
	scan=$(torrc_scan)
	local have_block=0
	while IFS=$'\t' read -r bname bport bdir; do
		[ -n "$bname" ] || continue
		if [ "$bname" = "$name" ]; then
			have_block=1
			[ "$bport" = "$port" ] ||
				die "$E_TAKEN" "name '$name' taken: $torrc maps it to port ${bport:-?}, not $port (use --remove $name first)"
			[ "$bdir" = "$hsdir" ] ||
				die "$E_TAKEN" "name '$name' taken: $torrc has HiddenServiceDir ${bdir:-?}, not $hsdir"
		elif [ "$bport" = "$port" ]; then
			die "$E_PORT" "port $port is used by torsite '$bname' in $torrc"
		fi
	done <<<"$scan"
	meta=$(nginx_meta "$ng_file")
	if [ -n "$meta" ]; then
		IFS=$'\t' read -r ng_port ng_gen ng_root <<<"$meta"
		[ "$ng_port" = "$port" ] ||
			die "$E_TAKEN" "name '$name' taken: $ng_file serves port $ng_port, not $port (use --remove $name first)"
		[ "$ng_root" = "$root" ] ||
			die "$E_TAKEN" "name '$name' taken: $ng_file serves $ng_root, not $root (use --remove $name first)"
		generated=$ng_gen
	elif [ -e "$ng_file" ]; then
		die "$E_TAKEN" "name '$name' taken: $ng_file exists and was not written by $PROG"
	fi
	if [ -n "$ng_link" ] && { [ -e "$ng_link" ] || [ -L "$ng_link" ]; }; then
		{ [ -L "$ng_link" ] && [ "$(readlink -- "$ng_link")" = "$ng_file" ]; } ||
			die "$E_TAKEN" "name '$name' taken: $ng_link exists and is not a link to $ng_file"
	fi
	local f
	for f in "$ng_avail"/torsite-*.conf; do
		{ [ -f "$f" ] && [ "$f" != "$ng_file" ]; } || continue
		IFS=$'\t' read -r bport _ _ <<<"$(nginx_meta "$f")"
		[ "$bport" != "$port" ] || die "$E_PORT" "port $port is used by $f"
	done
	if [ -e "$hsdir" ] || [ -L "$hsdir" ]; then
		{ [ -d "$hsdir" ] && [ ! -L "$hsdir" ]; } || die "$E_TAKEN" "name '$name' taken: $hsdir exists and is not a directory"
		for f in "$hsdir"/* "$hsdir"/.[!.]*; do
			[ -e "$f" ] || continue
			case ${f##*/} in
			hostname | hs_ed25519_secret_key | hs_ed25519_public_key | authorized_clients | onion_service_non_anonymous) ;;
			*) die "$E_TAKEN" "name '$name' taken: $hsdir holds ${f##*/}, not an onion service directory" ;;
			esac
		done
	fi
	if [ "$have_block" -eq 0 ] && [ -z "$meta" ] && port_in_use "$port"; then
		die "$E_PORT" "port $port is in use on 127.0.0.1"
	fi

	# What it should be.
	local block ng_conf torrc_now torrc_new
	block="$begin_marker"$'\n'"HiddenServiceDir $hsdir"$'\n'"HiddenServicePort 80 127.0.0.1:$port"$'\n'"$end_marker"$'\n'
	ng_conf=$(
		cat <<EOF
# Managed by $PROG (ghostcomm). Remove with: $PROG --remove $name
# $MARK name=$name port=$port generated=$generated root=$root
server {
	listen 127.0.0.1:$port;
	server_name _;
	root $root;
	index index.html;
	server_tokens off;
	access_log off;
	autoindex off;
	location ~ /\\. {
		deny all;
	}
	location / {
		try_files \$uri \$uri/ =404;
	}
}
EOF
	)$'\n'
	read_into torrc_now "$torrc"
	if [ "$have_block" -eq 1 ]; then
		torrc_new=$torrc_now
	else
		torrc_new=$torrc_now
		[ -z "$torrc_new" ] || [[ $torrc_new == *$'\n' ]] || torrc_new+=$'\n'
		torrc_new+=$block
	fi
	local need_index=0 new_dirs=() d
	if [ "$generated" = yes ] && [ ! -e "$root/index.html" ]; then
		need_index=1
		d=$root
		while [ ! -e "$d" ]; do new_dirs=("$d" "${new_dirs[@]}"); d=${d%/*}; done
		[ -d "$d" ] || die "$E_USAGE" "cannot create $root: $d is not a directory"
	fi
	local ng_current=
	[ ! -f "$ng_file" ] || read_into ng_current "$ng_file"
	local change_torrc=0 change_ng=0 change_link=0
	[ "$torrc_new" = "$torrc_now" ] || change_torrc=1
	[ "$ng_conf" = "$ng_current" ] || change_ng=1
	[ -z "$ng_link" ] || [ -L "$ng_link" ] || change_link=1

	if [ "$dry_run" -eq 1 ]; then
		local any=0
		[ "$change_torrc" -eq 0 ] || { show "would append to $torrc" "$block"; any=1; }
		[ -f "$backup" ] || [ "$change_torrc" -eq 0 ] || printf '%s\n' "--- would back up $torrc to $backup"
		[ "$change_ng" -eq 0 ] || { show "would write $ng_file" "$ng_conf"; any=1; }
		[ "$change_link" -eq 0 ] || { printf '%s\n' "--- would link $ng_link -> $ng_file"; any=1; }
		[ "${#new_dirs[@]}" -eq 0 ] || printf '%s\n' "--- would create directories: ${new_dirs[*]}"
		[ "$need_index" -eq 0 ] || { show "would write $root/index.html" "$(index_html)"; any=1; }
		if [ "$any" -eq 1 ]; then
			printf '%s\n' "--- would verify: tor --verify-config -f $torrc; $ng_test" \
				"--- would run: $ng_reload" "--- would run: $tor_reload"
		else
			printf '%s\n' "--- nothing to change"
		fi
		printf '%s\n' "--- would wait up to ${timeout}s for $hsdir/hostname"
		return 0
	fi

	local changed=$((change_torrc + change_ng + change_link + need_index))
	if [ "$changed" -gt 0 ]; then
		check_writable
		if [ "$need_index" -eq 1 ]; then
			can_write_into "$root" || die "$E_PERM" "no permission to create $root/index.html"
		fi
		if [ "$change_torrc" -eq 1 ]; then backup_once; fi
		for d in "${new_dirs[@]}"; do
			mkdir -m 0755 -- "$d"
			journal+=("d"$'\t'"$d")
		done
		[ "$need_index" -eq 0 ] || put_file "$root/index.html" "$(index_html)"$'\n' 0644
		[ "$change_ng" -eq 0 ] || put_file "$ng_file" "$ng_conf" 0644
		if [ "$change_link" -eq 1 ]; then
			journal_file "$ng_link"
			ln -s -- "$ng_file" "$ng_link"
		fi
		[ "$change_torrc" -eq 0 ] || put_file "$torrc" "$torrc_new"
		verify_configs
		committed=1
		log "configured '$name': tor $hsdir -> 127.0.0.1:$port, nginx root $root"
	else
		log "'$name' is already configured; no file changed"
	fi

	if [ "$changed" -gt 0 ] || [ ! -s "$hsdir/hostname" ]; then
		reload_all
	fi

	local deadline addr=
	deadline=$((SECONDS + timeout))
	log "waiting up to ${timeout}s for $hsdir/hostname"
	while :; do
		if [ -s "$hsdir/hostname" ]; then
			read_into addr "$hsdir/hostname"
			addr=${addr%$'\n'}
			[[ $addr =~ ^[a-z2-7]{56}\.onion$ ]] && break
		fi
		[ "$SECONDS" -lt "$deadline" ] ||
			die "$E_TIMEOUT" "no valid $hsdir/hostname after ${timeout}s: is tor running, and did '$tor_reload' reach it?"
		sleep 0.2
	done
	log "serving $root at http://$addr/"
	printf '%s\n' "$addr"
}

# Serialise runs on the same torrc: checks and edits happen under one lock.
[ "$dry_run" -eq 1 ] || lock
if [ "$mode" = remove ]; then do_remove; else do_create; fi

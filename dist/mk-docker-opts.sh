#!/bin/sh
# mk-docker-opts.sh: turn flanneld's subnet.env into Docker daemon options.
#
# Drop-in for upstream flannel's script of the same name: same options,
# defaults, usage text and output bytes. Differences, all for inputs where
# upstream misbehaves:
#   - When the Docker env file is the flannel env file itself (a published
#     guide does `-d /run/flannel/subnet.env`), the FLANNEL_* lines are kept
#     and the DOCKER_* lines written after them; the file is replaced
#     atomically so readers such as the CNI plugin never see it half written.
#   - The combined key given with -k must be a shell variable name (it is
#     expanded with eval).
#   - The routing-table check matches the subnet as a whole word, so
#     110.1.74.0/24 no longer counts as 10.1.74.0/24.
#
# POSIX sh only: it runs as /bin/sh, which is dash on Debian and Ubuntu.

usage() {
	echo "$0 [-f FLANNEL-ENV-FILE] [-d DOCKER-ENV-FILE] [-i] [-c] [-m] [-k COMBINED-KEY]

Generate Docker daemon options based on flannel env file
OPTIONS:
	-f	Path to flannel env file. Defaults to /run/flannel/subnet.env
	-d	Path to Docker env file to write to. Defaults to /run/docker_opts.env
	-i	Output each Docker option as individual var. e.g. DOCKER_OPT_MTU=1500
	-c	Output combined Docker options into DOCKER_OPTS var
	-k	Set the combined options key to this value (default DOCKER_OPTS=)
	-m	Do not output --ip-masq (useful for older Docker version)
" >&2
	exit 1
}

flannel_env=/run/flannel/subnet.env
docker_env=/run/docker_opts.env
combined_opts_key=DOCKER_OPTS
indiv_opts=false
combined_opts=false
ipmasq=true

while getopts "f:d:icmk:?h" opt; do
	case $opt in
	f) flannel_env=$OPTARG ;;
	d) docker_env=$OPTARG ;;
	i) indiv_opts=true ;;
	c) combined_opts=true ;;
	m) ipmasq=false ;;
	k) combined_opts_key=$OPTARG ;;
	*) usage ;;
	esac
done

case $combined_opts_key in
'' | [0-9]* | *[!A-Za-z0-9_]*)
	echo "Invalid combined options key: '$combined_opts_key' is not a shell variable name" >&2
	exit 1
	;;
esac

# Neither -i nor -c means both.
if [ "$indiv_opts" = false ] && [ "$combined_opts" = false ]; then
	indiv_opts=true
	combined_opts=true
fi

# Writing into the flannel env file itself: keep flanneld's lines. Only
# those are read back, so a second run does not pick up the DOCKER_* lines
# of the first one and the file stays the same however often this runs.
same_file=false
if [ -f "$flannel_env" ] && [ -f "$docker_env" ] &&
	{ [ "$flannel_env" = "$docker_env" ] || [ "$flannel_env" -ef "$docker_env" ]; }; then
	same_file=true
fi

if [ -f "$flannel_env" ]; then
	if [ "$same_file" = true ]; then
		kept_lines=$(grep '^FLANNEL_' "$flannel_env")
		eval "$kept_lines"
	else
		# `.` looks a name without a slash up in $PATH; a relative path
		# given with -f means the file here.
		case $flannel_env in
		*/*) . "$flannel_env" ;;
		*) . "./$flannel_env" ;;
		esac
	fi
fi

if [ -n "$FLANNEL_SUBNET" ]; then
	DOCKER_OPT_BIP="--bip=$FLANNEL_SUBNET"
fi

if [ -n "$FLANNEL_MTU" ]; then
	DOCKER_OPT_MTU="--mtu=$FLANNEL_MTU"
fi

# flanneld masquerading already means Docker must not, and the other way
# round.
if [ -n "$FLANNEL_IPMASQ" ] && [ "$ipmasq" = true ]; then
	case $FLANNEL_IPMASQ in
	true) DOCKER_OPT_IPMASQ="--ip-masq=false" ;;
	false) DOCKER_OPT_IPMASQ="--ip-masq=true" ;;
	*)
		echo "Invalid value of FLANNEL_IPMASQ: $FLANNEL_IPMASQ" >&2
		exit 1
		;;
	esac
fi

# An existing value of the combined key (from the environment or the env
# file) comes first, followed by one space; each option then adds " value".
# Hence the leading space when there is no existing value, and two spaces
# after it when there is one: upstream's bytes, which users' files match.
eval "docker_opts=\${$combined_opts_key}"
if [ -n "$docker_opts" ]; then
	docker_opts="$docker_opts "
fi

# Every DOCKER_OPT_* variable, ours and any the caller exported, sorted by
# name as `set` lists them: BIP, IPMASQ, MTU. Only lines that start with a
# name count, so a value that merely contains DOCKER_OPT_ (or, in bash, a
# function body) adds nothing.
opt_names=$(set | sed -n 's/^\(DOCKER_OPT_[A-Za-z0-9_]*\)=.*/\1/p' | sort -u)

out=$(
	for name in $opt_names; do
		# A line of a multi-line value is no variable.
		eval "[ -n \"\${$name+set}\" ]" || continue
		eval "value=\${$name}"
		if [ "$indiv_opts" = true ]; then
			printf '%s="%s"\n' "$name" "$value"
		fi
		docker_opts="$docker_opts $value"
	done
	if [ "$combined_opts" = true ]; then
		printf '%s="%s"\n' "$combined_opts_key" "$docker_opts"
	fi
)

if [ "$same_file" = true ]; then
	# cp -p first so the new file keeps the mode and owner of the old one.
	tmp="$docker_env.tmp.$$"
	cp -p "$docker_env" "$tmp" && {
		if [ -n "$kept_lines" ]; then
			printf '%s\n' "$kept_lines"
		fi
		if [ -n "$out" ]; then
			printf '%s\n' "$out"
		fi
	} >"$tmp" && mv -f "$tmp" "$docker_env" || {
		rm -f "$tmp"
		echo "Failed to write $docker_env" >&2
		exit 1
	}
else
	# Truncate and write in place, as upstream does: this keeps the mode,
	# owner and symlinks of an existing file and works for -d /dev/stdout.
	if [ -n "$out" ]; then
		printf '%s\n' "$out" >"$docker_env"
	else
		: >"$docker_env"
	fi || exit 1
fi

# Docker would route the subnet through docker0; a route for it via a
# gateway means the subnet is already used elsewhere on this host.
if [ -n "$FLANNEL_SUBNET" ]; then
	gw_addr=${FLANNEL_SUBNET%/*}
	prefix_len=${FLANNEL_SUBNET#*/}
	last_octet=${gw_addr##*.}
	case $last_octet in
	'' | *[!0-9]*)
		echo "Invalid value of FLANNEL_SUBNET: $FLANNEL_SUBNET" >&2
		exit 1
		;;
	esac
	subnet="${gw_addr%.*}.$((last_octet - 1))/$prefix_len"
	route_invalid=$(ip route show | awk -v subnet="$subnet" '
		{
			dst = 0; via = 0
			for (i = 1; i <= NF; i++) {
				if ($i == subnet) dst = 1
				if ($i == "via") via = 1
			}
			if (dst && via) print
		}')
	if [ -n "$route_invalid" ]; then
		echo "Your routing table already contains the subnet: $route_invalid" >&2
		exit 1
	fi
fi

# `sam local` without Docker, sourced by ./dev: rootful podman from Debian serving the Docker API
# on a private socket, with a private configuration and storage under .stack/sam-local, and a
# stand-in for the `provided.al2023` base image built from Debian's archive (no registry is
# reachable). Everything here is idempotent.
# shellcheck shell=bash

SAM_LOCAL="$STATE/sam-local"
SAM_LOCAL_IMAGE=public.ecr.aws/lambda/provided:al2023-x86_64
# The local API is on 3000: `sam local start-api` answers beside it.
SAM_API_PORT=${SAM_API_PORT:-3100}

podman_env() {
  export CONTAINERS_CONF="$SAM_LOCAL/containers.conf"
  export CONTAINERS_STORAGE_CONF="$SAM_LOCAL/storage.conf"
  export DOCKER_HOST="unix://$SAM_LOCAL/podman.sock"
}

podman_answers() { curl -sf --max-time 2 --unix-socket "$SAM_LOCAL/podman.sock" http://d/_ping; }

sam_local_setup() {
  install_all
  apt_install podman runc conmon uidmap fuse-overlayfs containernetworking-plugins iptables \
    debootstrap
  mkdir -p "$SAM_LOCAL/storage" "$SAM_LOCAL/runroot" "$SAM_LOCAL/tmp"
  # crun refuses this kind of machine's hybrid cgroup v1/v2 layout: runc with cgroupfs. Hard
  # limits cannot be raised without CAP_SYS_RESOURCE, so the containers ask for what the host
  # gives.
  cat >"$SAM_LOCAL/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$SAM_LOCAL/events.log"
tmp_dir = "$SAM_LOCAL/tmp"
EOF
  cat >"$SAM_LOCAL/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$SAM_LOCAL/storage"
runroot = "$SAM_LOCAL/runroot"
EOF
  podman_env
  if ! podman_answers >/dev/null 2>&1; then
    say "starting podman's Docker API on $SAM_LOCAL/podman.sock"
    rm -f "$SAM_LOCAL/podman.sock"
    start_bg podman podman system service --time=0 "unix://$SAM_LOCAL/podman.sock"
    wait_for podman 30 podman_answers
  fi
  host_loopback_for_containers
  if ! podman image exists "$SAM_LOCAL_IMAGE"; then
    local rootfs="$SAM_LOCAL/rootfs" mirror t0
    mirror=$(debian_mirror)
    t0=$(now_ms)
    say "building the stand-in for $SAM_LOCAL_IMAGE from $mirror (debootstrap)"
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=curl,ca-certificates bookworm "$rootfs" "$mirror" \
      >"$LOGS/debootstrap.log" 2>&1 || die "debootstrap failed (log: $LOGS/debootstrap.log)"
    tar -C "$rootfs" -c . | podman import -q --change 'WORKDIR /var/task' - "$SAM_LOCAL_IMAGE" >/dev/null
    rm -rf "$rootfs"
    say "stand-in image ready in $(( ($(now_ms) - t0) / 1000 ))s"
  fi
}

# SAM creates its containers through the Docker API, which podman puts on its bridge network
# whatever containers.conf says (so slirp4netns' view of the host is out of reach). A function
# reaches the local stack, bound to the host's loopback, at 10.0.2.2 all the same: TCP to
# 10.0.2.2 is translated to 127.0.0.1 (which the kernel routes only with route_localnet on),
# from 127.0.0.1 (so PostgreSQL's pg_hba and Redis' protected mode see a local client).
# `./dev down` undoes all three.
SAM_NAT_TO=(PREROUTING -d 10.0.2.2/32 -p tcp -j DNAT --to-destination 127.0.0.1)
SAM_NAT_FROM=(INPUT -p tcp -m conntrack --ctorigdst 10.0.2.2 -j SNAT --to-source 127.0.0.1)
host_loopback_for_containers() {
  if [ ! -f "$SAM_LOCAL/route_localnet.before" ]; then
    sysctl -n net.ipv4.conf.all.route_localnet >"$SAM_LOCAL/route_localnet.before"
  fi
  sysctl -qw net.ipv4.conf.all.route_localnet=1
  iptables -t nat -C "${SAM_NAT_TO[@]}" 2>/dev/null || iptables -t nat -I "${SAM_NAT_TO[@]}"
  iptables -t nat -C "${SAM_NAT_FROM[@]}" 2>/dev/null || iptables -t nat -A "${SAM_NAT_FROM[@]}"
}
host_loopback_undo() {
  [ -f "$SAM_LOCAL/route_localnet.before" ] || return 0
  iptables -t nat -D "${SAM_NAT_TO[@]}" 2>/dev/null || true
  iptables -t nat -D "${SAM_NAT_FROM[@]}" 2>/dev/null || true
  sysctl -qw "net.ipv4.conf.all.route_localnet=$(cat "$SAM_LOCAL/route_localnet.before")"
  rm -f "$SAM_LOCAL/route_localnet.before"
}

# The Debian archive apt already uses on this machine.
debian_mirror() {
  local uri
  uri=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | grep -v security | head -1 | sed -E 's/^URIs: *//; s/^deb (\[[^]]*\] )?//; s/ .*//')
  echo "${uri:-http://deb.debian.org/debian}"
}

sam_local_usage() {
  cat <<MSG

sam local is ready: podman's Docker API on $SAM_LOCAL/podman.sock, the stand-in image
$SAM_LOCAL_IMAGE. Each command below runs sam build (x86_64) first:

  ./dev sam invoke ReadApiFunction events/get-run.json     # a fresh token is filled in
  ./dev sam start-api                                     # http://127.0.0.1:$SAM_API_PORT
  ./dev sam cycle                                         # launch -> worker -> completed run
  ./dev sam events                                        # every event in events/

Functions reach the local stack through 10.0.2.2; their credentials come from LocalStack's
Secrets Manager (secret $SAM_SECRET_NAME), as on AWS.
MSG
}

SAM_SECRET_NAME=docbundle/sam-local
SAM_BUILD_DIR=.aws-sam/x86_64
GLIBC_MAX=2.34 # Amazon Linux 2023's

sam_py() { "$STATE/localstack/bin/python" "$ROOT/stack/sam_local.py" "$@"; }

# Every function crate builds into the workspace's target folder: SAM's cargo-lambda step reads
# the binary from <CodeUri>/target/lambda, so each crate's `target` is a link to the shared one
# (one build of the shared dependencies instead of one per function).
share_target_dir() {
  local crate
  mkdir -p "$ROOT/target"
  for crate in "$ROOT"/functions/*/; do
    [ -L "$crate/target" ] && continue
    rm -rf "$crate/target"
    ln -s ../../target "$crate/target"
  done
}

# Fails when a built bootstrap needs a newer glibc than Amazon Linux 2023 has.
check_glibc() { # BUILD_DIR
  local bootstrap newest
  for bootstrap in "$ROOT/$1"/*/bootstrap; do
    [ -f "$bootstrap" ] || continue
    newest=$(readelf --dyn-syms -W "$bootstrap" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
    if [ "$(printf '%s\n%s\n' "$newest" "$GLIBC_MAX" | sort -V | tail -1)" != "$GLIBC_MAX" ]; then
      die "$(basename "$(dirname "$bootstrap")") needs glibc $newest; Amazon Linux 2023 has $GLIBC_MAX"
    fi
    printf '%-28s %6s  needs glibc %s (<= %s)\n' "$(basename "$(dirname "$bootstrap")")" \
      "$(du -h "$bootstrap" | cut -f1)" "$newest" "$GLIBC_MAX"
  done
}

# sam build for this machine's architecture (x86_64) into .aws-sam/x86_64, the arm64 build in
# .aws-sam/build left alone.
# One function builds into .aws-sam/x86_64-<LogicalId> (sam build empties its build folder
# first, so a single-function build must not share the full one's).
SAM_TEMPLATE=$SAM_BUILD_DIR/template.yaml
sam_local_build() { # [FUNCTION...] (logical ids or folder names)
  install_all
  apt_install binutils
  share_target_dir
  local ids
  ids=$(logical_ids "$@") || exit 1
  # shellcheck disable=SC2086
  set -- $ids
  local dir=$SAM_BUILD_DIR
  [ $# -gt 0 ] && dir=$SAM_BUILD_DIR-$1
  say "sam build for x86_64: ${1:-every function} -> $dir"
  local t0; t0=$(now_ms)
  (cd "$ROOT" && PATH="$STATE/tools/bin:$PATH" SAM_CLI_BETA_RUST_CARGO_LAMBDA=1 \
    sam build "$@" --template-file template.yaml --build-dir "$dir" \
      --parameter-overrides Architecture=x86_64 >"$LOGS/sam-build-x86_64.log" 2>&1) \
    || { tail -30 "$LOGS/sam-build-x86_64.log" >&2; die "sam build failed (log: $LOGS/sam-build-x86_64.log)"; }
  say "sam build finished in $(( ($(now_ms) - t0) / 1000 ))s"
  check_glibc "$dir"
  SAM_TEMPLATE=$dir/template.yaml
}

# The database migrated and the sample merchants there, the secret in LocalStack, and the
# arguments every sam local command takes (in SAM_ARGS).
SAM_ARGS=()
sam_local_prepare() {
  sam_local_setup
  services >/dev/null
  build_local >/dev/null
  "$ROOT/target/$PROFILE/docbundle-local" migrate >/dev/null
  seed_merchants
  local arn
  arn=$(sam_py secret)
  sam_py env-vars "$SAM_LOCAL/env.json"
  # shellcheck disable=SC2207
  SAM_ARGS=(--template "$ROOT/$SAM_TEMPLATE" --skip-pull-image
    --region "$AWS_REGION" --env-vars "$SAM_LOCAL/env.json"
    --parameter-overrides "$(sam_py overrides "$arn")")
  podman_env
  # sam asks STS for the account id on every command; AWS itself is out of reach here, so
  # without this each command waits ~5 s for the call to time out.
  export AWS_ENDPOINT_URL_STS=$AWS_ENDPOINT_URL
  SAM_ARGS_JSON=$(printf '%s\0' "${SAM_ARGS[@]}" \
    | python3 -c 'import json, sys; print(json.dumps(sys.stdin.read().split("\0")[:-1]))')
  SAM_UNSET=$(sam_unset_args | grep -v '^-u$' | tr '\n' ' ')
  export SAM_ARGS_JSON SAM_LOCAL ROOT SAM_UNSET STATE
}

# sam local hands a function the shell's value of each variable the template declares, over the
# template's own: sam runs without the local stack's settings (stack/local.env), so that the
# template and its parameters decide, as on AWS. The AWS credentials and region stay.
sam_unset_args() {
  local name
  for name in $(grep -oE '^[A-Z_]+=' "$ROOT/stack/local.env" | tr -d =); do
    case "$name" in AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY|AWS_REGION) ;; *) printf -- '-u\n%s\n' "$name" ;; esac
  done
}
sam_cli() {
  local unset_args
  mapfile -t unset_args < <(sam_unset_args)
  (cd "$ROOT" && env "${unset_args[@]}" PATH="$STATE/tools/bin:$PATH" sam "$@")
}

sam_local_invoke() { # FUNCTION EVENT [CLIENT] — FUNCTION: its logical id or folder name
  local function=${1:?usage: ./dev sam invoke LOGICAL_ID EVENT [CLIENT]} event=${2:?event file}
  function=$(logical_id "$function") || exit 1
  local client=${3:-merchant-a}
  [ -f "$event" ] || die "no event file $event"
  if [ -z "${SAM_NO_BUILD:-}" ]; then
    sam_local_build "$function"
  elif [ -f "$ROOT/$SAM_BUILD_DIR-$function/template.yaml" ]; then
    SAM_TEMPLATE=$SAM_BUILD_DIR-$function/template.yaml
  fi
  sam_local_prepare
  local filled="$SAM_LOCAL/event-$function.json"
  sam_py event "$event" "$filled" "$client"
  sam_cli local invoke "$function" --event "$filled" "${SAM_ARGS[@]}"
}

sam_local_start_api() { # [sam local start-api options...]
  [ -n "${SAM_NO_BUILD:-}" ] || sam_local_build
  sam_local_prepare
  port_open "$SAM_API_PORT" && die "port $SAM_API_PORT is taken (SAM_API_PORT=... to choose another)"
  say "sam local start-api on http://127.0.0.1:$SAM_API_PORT"
  sam_cli local start-api --port "$SAM_API_PORT" --host 127.0.0.1 "${SAM_ARGS[@]}" "$@"
}

# start-api in the background on SAM_API_PORT; stopped by stop_start_api.
START_API_PID=
start_api_bg() {
  port_open "$SAM_API_PORT" && die "port $SAM_API_PORT is taken (SAM_API_PORT=... to choose another)"
  local unset_args
  mapfile -t unset_args < <(sam_unset_args)
  (cd "$ROOT" && exec env "${unset_args[@]}" PATH="$STATE/tools/bin:$PATH" setsid sam local start-api \
    --port "$SAM_API_PORT" --host 127.0.0.1 "${SAM_ARGS[@]}" "$@") >"$LOGS/sam-start-api.log" 2>&1 &
  START_API_PID=$!
  wait_for sam-start-api 120 port_open "$SAM_API_PORT"
}
stop_start_api() {
  [ -n "$START_API_PID" ] || return 0
  # Interrupted (as by Ctrl-C), sam stops its containers; killed, it leaves them running.
  kill -INT -- "-$START_API_PID" 2>/dev/null || true
  local _
  for _ in $(seq 100); do kill -0 "$START_API_PID" 2>/dev/null || break; sleep 0.1; done
  kill -- "-$START_API_PID" 2>/dev/null || true
  wait "$START_API_PID" 2>/dev/null || true
  START_API_PID=
  remove_function_containers
}

# Function containers sam left behind (a start-api that was killed).
remove_function_containers() {
  podman_answers >/dev/null 2>&1 || return 0
  local ids
  ids=$(podman ps -aq --filter "ancestor=${SAM_LOCAL_IMAGE%-x86_64}-rapid-x86_64" 2>/dev/null || true)
  # shellcheck disable=SC2086 # one id per word
  [ -z "$ids" ] || podman rm -f $ids >/dev/null 2>&1 || true
}

# launch -> worker -> completed, the HTTP side through start-api (configuration, launch, get)
# and the worker through sam local invoke on the run's message from the queue. The local API
# must not be running: its in-process worker would take the message first.
sam_local_cycle() {
  port_open 3000 && die "the local API on :3000 runs a worker that would take the run's message: stop it first"
  [ -n "${SAM_NO_BUILD:-}" ] || sam_local_build
  sam_local_prepare
  trap stop_start_api EXIT
  local t0; t0=$(now_ms)
  start_api_bg
  say "start-api up in $(( $(now_ms) - t0 )) ms; the cycle:"
  sam_py cycle "http://127.0.0.1:$SAM_API_PORT"
  say "cycle done in $(( ($(now_ms) - t0) / 1000 ))s"
}

# Every event in events/ through sam local invoke, each against real data.
sam_local_events() {
  port_open 3000 && die "the local API on :3000 runs a worker that would take the run's message: stop it first"
  [ -n "${SAM_NO_BUILD:-}" ] || sam_local_build
  sam_local_prepare
  local t0; t0=$(now_ms)
  sam_py events
  say "every event in $(( ($(now_ms) - t0) / 1000 ))s"
}

# What CI runs, bounded: the read-api function built for x86_64, a run completed by the local
# API, then that run read through `sam local invoke` and through `sam local start-api`.
sam_local_check() {
  sam_local_build ReadApiFunction
  sam_local_prepare
  up >/dev/null
  trap stop_start_api EXIT
  start_api_bg
  timeout 600 "$STATE/localstack/bin/python" "$ROOT/stack/sam_local.py" check \
    http://127.0.0.1:3000 "http://127.0.0.1:$SAM_API_PORT"
}

sam_local() {
  local command=${1:-}; shift || true
  case "$command" in
    build) sam_local_build "$@" ;;
    invoke) sam_local_invoke "$@" ;;
    start-api) sam_local_start_api "$@" ;;
    cycle) sam_local_cycle "$@" ;;
    events) sam_local_events "$@" ;;
    check) sam_local_check "$@" ;;
    *) die "usage: ./dev sam build|invoke|start-api|cycle|events|check" ;;
  esac
}

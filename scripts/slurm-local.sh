#!/usr/bin/env bash
# A real single-node Slurm cluster (with accounting) on loopback, for tests and CI.
#
#   scripts/slurm-local.sh install       apt-install slurm, munge, slurmdbd, MariaDB
#   scripts/slurm-local.sh start DIR     configure and start the daemons under DIR
#   scripts/slurm-local.sh stop DIR      cancel jobs, stop the daemons of DIR
#   scripts/slurm-local.sh status DIR    show which daemons of DIR run
#   scripts/slurm-local.sh env DIR       print the client environment (export lines)
#
# Everything (munge key and socket, MariaDB data, configs, state, logs, pid
# files) lives under DIR. MariaDB listens on 127.0.0.1, the Slurm daemons on the
# loopback address the hostname resolves to (127.0.0.1 here; see resolve_addr),
# all on ports that differ from the system defaults. Start order is munged -> mariadbd ->
# slurmdbd -> slurmctld -> slurmd; stop is the reverse, each daemon by the PID
# in its pid file, after checking that the PID still names that program.
#
# Ports (environment, read by `start`): SLURM_LOCAL_CTLD_PORT (7817),
# SLURM_LOCAL_SLURMD_PORT (7818), SLURM_LOCAL_DBD_PORT (7819),
# SLURM_LOCAL_DB_PORT (7306). SLURM_LOCAL_GRACE_S (30) is the GraceTime of the
# preemptible `debug` partition. Clients need only SLURM_CONF (see `env`).
set -euo pipefail

readonly PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
readonly SERVICES=(munge slurmctld slurmd slurmdbd mariadb)
readonly DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)
readonly STOP_GRACE_S=10
readonly START_TIMEOUT_S=60

usage() {
    cat >&2 <<'EOF'
usage: slurm-local.sh install
       slurm-local.sh start DIR
       slurm-local.sh stop DIR
       slurm-local.sh status DIR
       slurm-local.sh env DIR
A single-node Slurm with slurmdbd + MariaDB on loopback; all state in DIR.
Ports: SLURM_LOCAL_CTLD_PORT SLURM_LOCAL_SLURMD_PORT SLURM_LOCAL_DBD_PORT
SLURM_LOCAL_DB_PORT (defaults 7817 7818 7819 7306).
EOF
    exit 2
}

readonly T0="$EPOCHREALTIME"
log() {
    local elapsed
    elapsed="$(awk -v now="$EPOCHREALTIME" -v t0="$T0" 'BEGIN { printf "%.1f", now - t0 }')"
    printf '[slurm-local %ss] %s\n' "$elapsed" "$*" >&2
}
die() { printf '[slurm-local] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- install ---

missing_packages() {
    local pkg
    for pkg in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
            printf '%s\n' "$pkg"
        fi
    done
}

cmd_install() {
    [[ "$(id -u)" == 0 ]] || die "install needs root (apt-get)"
    local missing
    missing="$(missing_packages)"
    if [[ -z "$missing" ]]; then
        log "already installed: ${PACKAGES[*]}"
    else
        log "installing: $(tr '\n' ' ' <<<"$missing")"
        # Keep the packages' maintainer scripts from starting system daemons on
        # the default ports; ours run from DIR. An existing policy is left alone.
        local own_policy=0
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
            own_policy=1
        fi
        local rc=0
        {
            apt-get update -q &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
        } || rc=$?
        if ((own_policy)); then
            rm -f /usr/sbin/policy-rc.d
        fi
        ((rc == 0)) || die "apt-get failed (exit $rc)"
    fi
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
        local svc
        for svc in "${SERVICES[@]}"; do
            systemctl disable --now "$svc" >/dev/null 2>&1 || true
        done
        log "stopped and disabled system services: ${SERVICES[*]}"
    fi
}

# ------------------------------------------------------------------ paths ---

# set_paths DIR [create]: absolute paths of DIR's parts; DIR must exist unless create.
set_paths() {
    [[ -n "${1:-}" ]] || usage
    if [[ "${2:-}" == create ]]; then
        mkdir -p "$1"
    fi
    [[ -d "$1" ]] || die "no cluster directory $1"
    DIR="$(cd "$1" && pwd -P)"
    ETC="$DIR/etc"
    RUN="$DIR/run"
    LOGS="$DIR/log"
    MUNGE="$DIR/munge"
    DB="$DIR/mariadb"
    STATE="$DIR/state"
    MUNGE_SOCK="$MUNGE/munge.sock"
    DB_SOCK="$DB/mysqld.sock"
    SLURM_CONF_FILE="$ETC/slurm.conf"
    PORTS_FILE="$DIR/ports.env"
    # The unix socket path limit is 108 bytes.
    ((${#MUNGE_SOCK} < 100 && ${#DB_SOCK} < 100)) || die "DIR path too long for unix sockets: $DIR"
}

pidfile_of() {
    case "$1" in
        munged) printf '%s\n' "$RUN/munged.pid" ;;
        mariadbd) printf '%s\n' "$RUN/mariadbd.pid" ;;
        slurmdbd) printf '%s\n' "$RUN/slurmdbd.pid" ;;
        slurmctld) printf '%s\n' "$RUN/slurmctld.pid" ;;
        slurmd) printf '%s\n' "$RUN/slurmd.pid" ;;
        *) die "unknown daemon $1" ;;
    esac
}

# Print the PID of daemon $1 if its pid file names a live process of that program.
live_pid() {
    local name="$1" file pid comm
    file="$(pidfile_of "$name")"
    [[ -s "$file" ]] || return 1
    pid="$(tr -dc '0-9' <"$file")"
    [[ -n "$pid" && -r "/proc/$pid/comm" ]] || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
    # comm is truncated to 15 characters; the daemons' names are shorter.
    [[ "$comm" == "$name" ]] || return 1
    printf '%s\n' "$pid"
}

# port_in_use ADDR PORT: something accepts TCP connections there.
port_in_use() {
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# wait_until TIMEOUT_S WHAT CMD...: poll CMD every 0.2 s until it succeeds.
wait_until() {
    local timeout="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            log "timed out after ${timeout}s waiting for $what; last logs:"
            tail -n 20 "$LOGS"/*.log >&2 2>/dev/null || true
            return 1
        fi
        sleep 0.2
    done
}

# ----------------------------------------------------------------- config ---

# Ports: the environment's SLURM_LOCAL_*_PORT, else those of DIR's last start,
# else the defaults.
load_ports() {
    CTLD_PORT=7817
    SLURMD_PORT=7818
    DBD_PORT=7819
    DB_PORT=7306
    if [[ -f "$PORTS_FILE" ]]; then
        # shellcheck source=/dev/null
        source "$PORTS_FILE"
    fi
    CTLD_PORT="${SLURM_LOCAL_CTLD_PORT:-$CTLD_PORT}"
    SLURMD_PORT="${SLURM_LOCAL_SLURMD_PORT:-$SLURMD_PORT}"
    DBD_PORT="${SLURM_LOCAL_DBD_PORT:-$DBD_PORT}"
    DB_PORT="${SLURM_LOCAL_DB_PORT:-$DB_PORT}"
}

save_ports() {
    printf 'CTLD_PORT=%q\nSLURMD_PORT=%q\nDBD_PORT=%q\nDB_PORT=%q\n' \
        "$CTLD_PORT" "$SLURMD_PORT" "$DBD_PORT" "$DB_PORT" >"$PORTS_FILE"
}

write_configs() {
    local host node_line grace db_pass
    host="$(hostname -s)"
    node_line="$(slurmd -C | head -n 1)"
    [[ "$node_line" == NodeName=* ]] || die "unexpected 'slurmd -C' output: $node_line"
    grace="${SLURM_LOCAL_GRACE_S:-30}"
    db_pass="$(cat "$DB/slurm.pass")"

    cat >"$SLURM_CONF_FILE" <<EOF
# Written by scripts/slurm-local.sh; a single node on $ADDR, all state in $DIR.
ClusterName=sweeplocal
SlurmctldHost=$host($ADDR)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCK,cred_expire=10
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$ADDR
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCK
JobCompType=jobcomp/none
MailProg=/bin/true
MpiDefault=none
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=300
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal
$node_line NodeAddr=$ADDR State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES PriorityTier=1 GraceTime=$grace MaxTime=INFINITE State=UP
PartitionName=high Nodes=ALL Default=NO PriorityTier=10 MaxTime=INFINITE State=UP
EOF

    # slurmdbd reads slurmdbd.conf next to SLURM_CONF and insists on mode 600.
    (
        umask 077
        cat >"$ETC/slurmdbd.conf" <<EOF
# Written by scripts/slurm-local.sh.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
DbdAddr=$ADDR
CommunicationParameters=NoInAddrAny
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$db_pass
StorageLoc=slurm_acct_db
EOF
    )
    chmod 600 "$ETC/slurmdbd.conf"
}

# ----------------------------------------------------------------- start ----

start_munged() {
    if [[ ! -s "$MUNGE/munge.key" ]]; then
        (umask 077 && dd if=/dev/urandom of="$MUNGE/munge.key" bs=1024 count=1 status=none)
    fi
    chmod 600 "$MUNGE/munge.key"
    # --force: munged refuses a socket folder that other users cannot enter;
    # this one is private (0700) on purpose, only root uses this cluster.
    munged --force \
        --socket="$MUNGE_SOCK" \
        --key-file="$MUNGE/munge.key" \
        --pid-file="$RUN/munged.pid" \
        --log-file="$LOGS/munged.log" \
        --seed-file="$MUNGE/munged.seed"
    wait_until "$START_TIMEOUT_S" "munged" munge --socket="$MUNGE_SOCK" -n
}

start_mariadbd() {
    local first=0
    if [[ ! -d "$DB/data/mysql" ]]; then
        first=1
        mariadb-install-db --no-defaults --user=root --datadir="$DB/data" \
            --auth-root-authentication-method=socket --skip-test-db \
            >"$LOGS/mariadb-install.log" 2>&1 ||
            { tail -n 20 "$LOGS/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    fi
    # Not a forking daemon: detach it into its own session; it writes its pid file.
    setsid mariadbd --no-defaults --user=root \
        --datadir="$DB/data" \
        --bind-address=127.0.0.1 --port="$DB_PORT" \
        --socket="$DB_SOCK" \
        --pid-file="$RUN/mariadbd.pid" \
        --log-error="$LOGS/mariadbd.log" \
        --skip-name-resolve --skip-log-bin \
        --innodb-buffer-pool-size=64M \
        --innodb-log-file-size=16M \
        --innodb-lock-wait-timeout=900 \
        --max-connections=50 \
        </dev/null >/dev/null 2>&1 &
    wait_until "$START_TIMEOUT_S" "mariadbd" mariadb-admin --no-defaults --socket="$DB_SOCK" --user=root ping
    if ((first)); then
        local pass
        pass="$(cat "$DB/slurm.pass")"
        mariadb --no-defaults --protocol=socket --socket="$DB_SOCK" --user=root <<EOF
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
EOF
    fi
}

# Set ADDR, the loopback address the Slurm daemons bind to. With
# CommunicationParameters=NoCtldInAddrAny,NoInAddrAny they bind to the address
# the host's name resolves to (Slurm 22.05 ignores NodeAddr and SlurmctldHost's
# address for that); without it they bind to 0.0.0.0. The name must therefore
# resolve to loopback: 127.0.0.1 usually, 127.0.1.1 on a stock Debian install.
resolve_addr() {
    local host
    host="$(hostname)"
    ADDR="$(getent ahostsv4 "$host" | awk 'NR == 1 {print $1}')"
    if [[ "$ADDR" != 127.* ]]; then
        die "hostname '$host' resolves to '${ADDR:-nothing}', not a loopback address, and Slurm binds its daemons to it; on a throwaway CI machine run: echo \"127.0.0.1 $host\" >>/etc/hosts"
    fi
}

ctld_up() {
    scontrol ping 2>/dev/null | grep -q 'is UP'
}

node_idle() {
    local state
    state="$(sinfo -h -N -o '%T' 2>/dev/null | head -n 1)"
    [[ "$state" == idle ]]
}

cmd_start() {
    set_paths "$1" create
    [[ "$(id -u)" == 0 ]] || die "start needs root (SlurmUser=root)"
    local prog
    for prog in munged mariadbd mariadb-install-db slurmdbd slurmctld slurmd sinfo scontrol; do
        command -v "$prog" >/dev/null || die "$prog not found; run: $0 install"
    done
    local name
    for name in "${DAEMONS[@]}"; do
        if live_pid "$name" >/dev/null; then
            die "$name of $DIR already runs (pid $(live_pid "$name")); run: $0 stop $DIR"
        fi
    done
    resolve_addr
    mkdir -p "$ETC" "$RUN" "$LOGS" "$MUNGE" "$DB" "$STATE/slurmctld" "$STATE/slurmd"
    chmod 700 "$MUNGE"
    load_ports
    local port
    for port in "$CTLD_PORT" "$SLURMD_PORT" "$DBD_PORT" "$DB_PORT"; do
        if port_in_use 127.0.0.1 "$port" || port_in_use "$ADDR" "$port"; then
            die "port $port is in use; choose others with SLURM_LOCAL_*_PORT (see $0)"
        fi
    done
    save_ports
    if [[ ! -s "$DB/slurm.pass" ]]; then
        (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$DB/slurm.pass")
    fi
    write_configs

    local t0=$SECONDS
    export SLURM_CONF="$SLURM_CONF_FILE"
    # A failed start stops whatever it had started.
    trap 'log "start failed; stopping what was started"; cmd_stop "$DIR" || true' EXIT
    log "starting munged"
    start_munged
    log "starting mariadbd on 127.0.0.1:$DB_PORT"
    start_mariadbd
    log "starting slurmdbd on $ADDR:$DBD_PORT"
    slurmdbd
    wait_until "$START_TIMEOUT_S" "slurmdbd port $DBD_PORT" port_in_use "$ADDR" "$DBD_PORT"
    log "starting slurmctld on $ADDR:$CTLD_PORT"
    slurmctld -f "$SLURM_CONF_FILE"
    wait_until "$START_TIMEOUT_S" "slurmctld (scontrol ping)" ctld_up
    log "starting slurmd on $ADDR:$SLURMD_PORT"
    slurmd -f "$SLURM_CONF_FILE"
    wait_until "$START_TIMEOUT_S" "node idle (sinfo)" node_idle
    wait_until "$START_TIMEOUT_S" "accounting (sacct)" sacct -n -X -S now
    trap - EXIT
    log "cluster up in $((SECONDS - t0))s; client environment:"
    cmd_env "$DIR"
}

cmd_env() {
    set_paths "$1"
    [[ -f "$SLURM_CONF_FILE" ]] || die "no cluster configured in $DIR"
    printf 'export SLURM_CONF=%q\n' "$SLURM_CONF_FILE"
}

# ------------------------------------------------------------------ stop ----

# terminate NAME=PID...: TERM them all, wait, KILL those alive after STOP_GRACE_S.
terminate() {
    local item pids=()
    for item in "$@"; do
        log "stopping ${item%%=*} (pid ${item#*=})"
        kill -TERM "${item#*=}" 2>/dev/null && pids+=("$item")
    done
    local deadline=$((SECONDS + STOP_GRACE_S)) alive
    while :; do
        alive=()
        for item in "${pids[@]}"; do
            kill -0 "${item#*=}" 2>/dev/null && alive+=("$item")
        done
        ((${#alive[@]} > 0)) || return 0
        if ((SECONDS >= deadline)); then
            for item in "${alive[@]}"; do
                log "${item%%=*} (pid ${item#*=}) ignored TERM for ${STOP_GRACE_S}s; sending KILL"
                kill -KILL "${item#*=}" 2>/dev/null || true
            done
            return 0
        fi
        sleep 0.1
    done
}

# Print NAME=PID for each daemon named in the arguments that runs.
running() {
    local name pid
    for name in "$@"; do
        if pid="$(live_pid "$name")"; then
            printf '%s=%s\n' "$name" "$pid"
        fi
    done
}

# Print NAME=PID for job processes of this cluster still alive: step daemons
# (slurmstepd, which inherit SLURM_CONF from the slurmd started here) and job
# tasks (SLURM_CONF exported by sbatch plus a SLURM_JOB_ID). They are stopped
# with slurmd, so no job outlives its cluster.
job_leftovers() {
    local proc pid comm
    for proc in /proc/[0-9]*; do
        pid="${proc#/proc/}"
        grep -qzxF "SLURM_CONF=$SLURM_CONF_FILE" "$proc/environ" 2>/dev/null || continue
        comm="$(cat "$proc/comm" 2>/dev/null)" || continue
        if [[ "$comm" == slurmstepd ]] || grep -qz '^SLURM_JOB_ID=' "$proc/environ" 2>/dev/null; then
            printf '%s=%s\n' "$comm" "$pid"
        fi
    done
}

# Jobs first (pending ones cancelled, running ones killed: this is teardown,
# and submitit's jobs ignore the TERM of a plain scancel), then the daemons in
# reverse start order. Daemons in one wave do not depend on each other.
cmd_stop() {
    set_paths "$1"
    export SLURM_CONF="$SLURM_CONF_FILE"
    if live_pid slurmctld >/dev/null; then
        scancel --user=root --state=PENDING >/dev/null 2>&1 || true
        scancel --user=root --full --signal=KILL >/dev/null 2>&1 || true
        local deadline=$((SECONDS + STOP_GRACE_S))
        while [[ -n "$(squeue -h -o %i 2>/dev/null)" ]] && ((SECONDS < deadline)); do
            sleep 0.2
        done
    fi
    local wave items=()
    for wave in "slurmd slurmctld" "slurmdbd" "mariadbd munged"; do
        # shellcheck disable=SC2086 # a wave is a list of names
        mapfile -t items < <(running $wave)
        if [[ "$wave" == slurmd* ]]; then
            mapfile -t -O "${#items[@]}" items < <(job_leftovers)
        fi
        ((${#items[@]} == 0)) || terminate "${items[@]}"
    done
    rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock" "$DB_SOCK"
    log "stopped"
}

# ---------------------------------------------------------------- status ----

cmd_status() {
    set_paths "$1"
    local name pid down=0
    for name in "${DAEMONS[@]}"; do
        if pid="$(live_pid "$name")"; then
            printf '%-10s running (pid %s)\n' "$name" "$pid"
        else
            printf '%-10s stopped\n' "$name"
            down=1
        fi
    done
    if ((down == 0)); then
        SLURM_CONF="$SLURM_CONF_FILE" sinfo
    fi
    return "$down"
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
        install) [[ $# -eq 1 ]] || usage; cmd_install ;;
        start | stop | status | env) [[ $# -eq 2 ]] || usage; "cmd_$cmd" "$2" ;;
        -h | --help | help) usage ;;
        *) usage ;;
    esac
}

main "$@"

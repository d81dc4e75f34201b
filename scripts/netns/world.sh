# shellcheck shell=bash disable=SC2034 # W_* are read by the scripts that source this
# A small Internet in Linux network namespaces, for testing Highway across NATs (issue 11).
# Source it, then:
#
#   world_check                # root, ip and iptables present? (world_init checks too)
#   world_init                 # installs the cleanup trap, builds the
#                              # public segment and the Gatekeeper's host
#   world_add restricted       # one kind at a time (see WORLD_KINDS); adds peers to W_PEERS
#   world_spawn "$ns" "$log" cmd args...   # a process inside a namespace, killed on exit
#   world_cleanup              # also run by the trap on exit, error, INT, TERM, HUP
#   world_sweep_stale          # removes namespaces left by runs that were SIGKILLed
#
# Only documentation ranges are used, and every interface lives in a namespace made here;
# nothing is linked to the host's own namespace, so no packet can leave the world:
#   203.0.113.0/24   the "public Internet": one bridge (br0) in namespace <P>-net
#   198.51.100.0/24  the carrier segment behind the carrier-grade NAT
#   192.0.2.0/24     home LANs, one /28 each
#
# Names: every namespace is "<P>-<short>", where <P> is "hw" plus the PID of the shell that
# sourced this (a letter added if leftovers of a run with the same PID exist), so parallel
# runs and leftovers do not collide. Interfaces are created inside the namespaces, never in
# the host's, so their names (eth0, wan, lan, b-<short>) only need to be unique per namespace.
#
# What this was checked on (kernel 6.18, iptables 1.8.9 with the nf_tables backend,
# iproute2 6.1): conntrack and NAT are built into the kernel (no module to load; nf_conntrack
# sysctls exist in every new namespace), and world_selftest (scripts/nat-matrix --selftest)
# showed each kind behaving as named: full cone kept the host's port towards both public
# hosts and let an unsolicited datagram from a third port in; MASQUERADE kept the port for
# every destination and dropped unsolicited ones; --random-fully gave one port per
# destination; the udpblocked router passed no UDP; the carrier NAT kept ports as well.
# Linux's MASQUERADE keeps the source port only while no other mapping holds it, so two
# hosts of one home using the same port would see the second remapped.
#
# After world_add, for each peer name p in W_PEERS: W_NS[p] (its host's namespace), W_IP[p]
# (its own address), W_KIND[p]; W_GK_NS and W_GK_IP name the Gatekeeper's host.

WORLD_KINDS="public fullcone restricted symmetric udpblocked cgnat samehome forwarded"

W_P=""
W_NSLIST=()      # every namespace made, in order (deleted in reverse)
W_PIDS=()        # every process started, killed by PID
W_PEERS=()
declare -A W_NS=() W_IP=() W_KIND=()
W_NET_NS=""
W_GK_NS=""
W_GK_IP=203.0.113.2
W_CLEANED=0

world__log() { echo "world: $*" >&2; }

# Whether the world can be built here: root, ip and iptables. Says what is missing.
world_check() {
  if [ "$(id -u)" != 0 ]; then
    world__log "needs root (network namespaces, iptables)"
    return 1
  fi
  local t
  for t in ip iptables; do
    if ! command -v "$t" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$t" ]; then
      world__log "$t is missing: apt-get install -y iproute2 iptables (scripts/test does)"
      return 1
    fi
  done
  export PATH="$PATH:/usr/sbin:/sbin"
}

# Picks the prefix, installs the trap and builds the public segment with the Gatekeeper's
# host.
world_init() {
  world_check || return 1
  W_P="hw$$"
  # A namespace left by an earlier run whose PID was the same: take a fresh letter. (The
  # list is read whole first: grep -q quitting early could fail the pipe under pipefail.)
  local letters=abcdefghijklmnopqrstuvwxyz i=0 existing
  existing=$(ip netns list 2>/dev/null | awk '{print $1}')
  while grep -q "^${W_P}-" <<<"$existing"; do
    [ "$i" -lt 26 ] || { world__log "no free prefix for hw$$"; return 1; }
    W_P="hw$$${letters:i:1}"
    i=$((i + 1))
  done
  trap 'world__on_exit' EXIT
  trap 'world__on_signal 130' INT
  trap 'world__on_signal 143' TERM
  trap 'world__on_signal 129' HUP

  # The public segment: a bridge in a namespace of its own, so hosts and routers on it see
  # each other as on one switch, and the host's namespace is never involved.
  world__ns net
  W_NET_NS=$W_RET
  ip -n "$W_NET_NS" link add br0 type bridge
  ip -n "$W_NET_NS" link set br0 up
  world__ns gk
  W_GK_NS=$W_RET
  world__public_port "$W_GK_NS" gk eth0 "$W_GK_IP"
}

# Adds the peers of one kind:
#   public      public-1, public-2: hosts on the public segment (future relays)
#   fullcone    endpoint-independent mapping and filtering (SNAT + DNAT of all to the host)
#   restricted  port-restricted cone: MASQUERADE (Linux keeps the source port when it can)
#   symmetric   MASQUERADE --random-fully: a new random port per destination
#   udpblocked  MASQUERADE, and the router's FORWARD chain drops UDP (TCP only)
#   cgnat       home MASQUERADE into 198.51.100.0/24, carrier MASQUERADE onto the public one
#   samehome    samehome-a, samehome-b: two hosts behind one MASQUERADE home router
#   forwarded   MASQUERADE, and the router forwards ports 7000 (UDP), 7001 and 7002 (TCP)
#               to the host: a node there uses those ports and --public-addr 203.0.113.27
world_add() {
  local kind=$1 r c
  case $kind in
    public)
      world__public_host public-1 pub1 203.0.113.11
      world__public_host public-2 pub2 203.0.113.12
      ;;
    fullcone)
      world__home fullcone fc 203.0.113.21 192.0.2.1 192.0.2.2
      r=$W_RET
      # SNAT to the router's one WAN address keeps the host's source port when it is free
      # (one host here, so always), so one socket gets one public mapping whatever the
      # destination; DNAT of everything new arriving on the WAN to the host, same port, is
      # endpoint-independent filtering: anyone may send to the mapping. Together: full cone.
      world__ipt "$r" -t nat -A POSTROUTING -o wan -j SNAT --to-source 203.0.113.21
      world__ipt "$r" -t nat -A PREROUTING -i wan -j DNAT --to-destination 192.0.2.2
      ;;
    restricted)
      world__home restricted rc 203.0.113.22 192.0.2.17 192.0.2.18
      r=$W_RET
      world__ipt "$r" -t nat -A POSTROUTING -o wan -j MASQUERADE
      ;;
    symmetric)
      world__home symmetric sym 203.0.113.23 192.0.2.33 192.0.2.34
      r=$W_RET
      world__ipt "$r" -t nat -A POSTROUTING -o wan -j MASQUERADE --random-fully
      ;;
    udpblocked)
      world__home udpblocked ub 203.0.113.24 192.0.2.49 192.0.2.50
      r=$W_RET
      world__ipt "$r" -t nat -A POSTROUTING -o wan -j MASQUERADE
      world__ipt "$r" -A FORWARD -p udp -j DROP
      ;;
    cgnat)
      # The carrier router: its inside is 198.51.100.1/24, its WAN on the public segment.
      world__ns cgc
      c=$W_RET
      world__router "$c"
      world__public_port "$c" cgc wan 203.0.113.25
      ip -n "$c" link add lan type bridge
      ip -n "$c" addr add 198.51.100.1/24 dev lan
      ip -n "$c" link set lan up
      world__ipt "$c" -t nat -A POSTROUTING -o wan -j MASQUERADE
      # The home router: WAN 198.51.100.2 on the carrier segment, LAN 192.0.2.64/28.
      world__ns cgr
      r=$W_RET
      world__router "$r"
      ip -n "$r" link add wan type veth peer name l-cgr netns "$c"
      ip -n "$c" link set l-cgr master lan up
      ip -n "$r" addr add 198.51.100.2/24 dev wan
      ip -n "$r" link set wan up
      ip -n "$r" route add default via 198.51.100.1
      world__ipt "$r" -t nat -A POSTROUTING -o wan -j MASQUERADE
      world__lan "$r" 192.0.2.65
      world__lan_host "$r" cgnat cg 192.0.2.66 192.0.2.65
      ;;
    samehome)
      world__home samehome-a sha 203.0.113.26 192.0.2.81 192.0.2.82 shr
      r=$W_RET
      world__lan_host "$r" samehome-b shb 192.0.2.83 192.0.2.81
      world__ipt "$r" -t nat -A POSTROUTING -o wan -j MASQUERADE
      ;;
    forwarded)
      world__home forwarded fw 203.0.113.27 192.0.2.97 192.0.2.98
      r=$W_RET
      world__ipt "$r" -t nat -A POSTROUTING -o wan -j MASQUERADE
      world__ipt "$r" -t nat -A PREROUTING -i wan -p udp --dport 7000 -j DNAT --to-destination 192.0.2.98:7000
      world__ipt "$r" -t nat -A PREROUTING -i wan -p tcp --dport 7001:7002 -j DNAT --to-destination 192.0.2.98
      ;;
    *)
      world__log "unknown kind '$kind' (kinds: $WORLD_KINDS)"
      return 1
      ;;
  esac
}

# Runs a command inside a namespace in the background, output to LOG; its PID (the command
# itself: ip netns exec execs it) is recorded for the cleanup and left in W_LAST_PID.
world_spawn() {
  local ns=$1 log=$2
  shift 2
  ip netns exec "$ns" "$@" >"$log" 2>&1 </dev/null &
  W_LAST_PID=$!
  W_PIDS+=("$W_LAST_PID")
}

# Records a PID started elsewhere (a background subshell) so the cleanup ends it too.
world_track() { W_PIDS+=("$@"); }

# Kills what was started (TERM, then KILL after up to 3 s), then anything still running
# inside our namespaces (only our own commands can be there), then deletes the namespaces.
# Idempotent.
world_cleanup() {
  [ "$W_CLEANED" = 0 ] || return 0
  W_CLEANED=1
  local pid ns alive i
  for pid in "${W_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for i in $(seq 30); do
    alive=0
    for pid in "${W_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 1 ] || break
    sleep 0.1
  done
  for pid in "${W_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  for ns in "${W_NSLIST[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  done
  # Reap what we can so no zombie outlives the run (bounded: everything was SIGKILLed).
  for pid in "${W_PIDS[@]}"; do timeout 2 tail --pid="$pid" -f /dev/null 2>/dev/null; done
  for ((i = ${#W_NSLIST[@]} - 1; i >= 0; i--)); do
    ip netns del "${W_NSLIST[i]}" 2>/dev/null || world__log "could not delete ${W_NSLIST[i]}"
  done
  W_NSLIST=()
}

# Removes what runs killed with SIGKILL (no trap) left: namespaces named like ours,
# hw<PID>[letter]-<short>, whose <PID> no longer runs, after killing what still runs inside
# them (only a dead run's own processes can be there). Prints what it removed.
world_sweep_stale() {
  local ns pid owner
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    [[ $ns =~ ^hw([0-9]+)[a-z]?-[a-z0-9]+$ ]] || continue
    owner=${BASH_REMATCH[1]}
    [ ! -d "/proc/$owner" ] || continue
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    ip netns del "$ns" && echo "removed stale namespace $ns"
  done
}

world__on_exit() {
  local rc=$?
  world_cleanup
  exit "$rc"
}

# A sourcing script may define world_interrupted (e.g. to say where its logs are); it runs
# first.
world__on_signal() {
  trap - INT TERM HUP
  world__log "interrupted, cleaning up"
  if declare -F world_interrupted >/dev/null; then world_interrupted; fi
  world_cleanup
  exit "$1"
}

# Makes namespace <P>-SHORT with loopback up (the control API listens there); its name is
# left in W_RET (not printed: a $(...) subshell would lose the W_NSLIST entry).
world__ns() {
  local ns="$W_P-$1"
  ip netns add "$ns" || return 1
  W_NSLIST+=("$ns")
  ip -n "$ns" link set lo up
  W_RET=$ns
}

world__router() {
  ip netns exec "$1" sysctl -qw net.ipv4.ip_forward=1
}

world__ipt() {
  local ns=$1
  shift
  ip netns exec "$ns" iptables -w 5 "$@"
}

# Plugs IF of namespace NS into the public bridge (port b-SHORT) with address IP/24.
world__public_port() {
  local ns=$1 short=$2 ifname=$3 ip=$4
  ip -n "$ns" link add "$ifname" type veth peer name "b-$short" netns "$W_NET_NS"
  ip -n "$W_NET_NS" link set "b-$short" master br0 up
  ip -n "$ns" addr add "$ip/24" dev "$ifname"
  ip -n "$ns" link set "$ifname" up
}

world__public_host() {
  local peer=$1 short=$2 ip=$3 ns
  world__ns "$short"
  ns=$W_RET
  world__public_port "$ns" "$short" eth0 "$ip"
  world__peer "$peer" "$ns" "$ip" public
}

# A home: router namespace <P>-<short>r (or ROUTER_SHORT) with WAN WAN_IP on the public
# segment and a LAN bridge with GW_IP/28, and one host HOST_IP behind it. Router in W_RET.
world__home() {
  local peer=$1 short=$2 wan_ip=$3 gw_ip=$4 host_ip=$5 rshort=${6:-${2}r} r
  world__ns "$rshort"
  r=$W_RET
  world__router "$r"
  world__public_port "$r" "$rshort" wan "$wan_ip"
  world__lan "$r" "$gw_ip"
  world__lan_host "$r" "$peer" "$short" "$host_ip" "$gw_ip"
  W_RET=$r
}

# The LAN side of router R: a bridge "lan" holding GW_IP/28, so a home may have several hosts.
world__lan() {
  ip -n "$1" link add lan type bridge
  ip -n "$1" addr add "$2/28" dev lan
  ip -n "$1" link set lan up
}

# A host <P>-SHORT on router R's LAN, with IP/28 and a default route via GW.
world__lan_host() {
  local r=$1 peer=$2 short=$3 ip=$4 gw=$5 ns
  world__ns "$short"
  ns=$W_RET
  ip -n "$ns" link add eth0 type veth peer name "l-$short" netns "$r"
  ip -n "$r" link set "l-$short" master lan up
  ip -n "$ns" addr add "$ip/28" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default via "$gw"
  world__peer "$peer" "$ns" "$ip" "${peer%-[ab]}"
}

world__peer() {
  W_PEERS+=("$1")
  W_NS[$1]=$2
  W_IP[$1]=$3
  W_KIND[$1]=$4
}

# Checks that the NATs behave as named, with UDP (python3): an echo server on public-1 and
# public-2 answers each datagram with the source address it saw; every other peer sends from
# one socket to both and prints the mappings; then public-2 sends unsolicited datagrams to
# the mapping public-1 saw, which only a full cone lets through. Needs world_add public.
# Prints one line per peer; returns non-zero when a kind does not behave as its name says.
world_selftest() {
  local dir=$1 p1=203.0.113.11 p2=203.0.113.12 peer out bad=0
  cat >"$dir/udp-echo.py" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 9999))
while True:
    data, src = s.recvfrom(2048)
    if data.startswith(b"poke "):
        # Unsolicited datagram to the mapping named in the request, from another port.
        ip, port = data[5:].decode().split(":")
        t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t.sendto(b"unsolicited", (ip, int(port)))
        t.close()
        s.sendto(b"poked", src)
    else:
        s.sendto(("%s:%d" % src).encode(), src)
EOF
  cat >"$dir/udp-probe.py" <<'EOF'
import socket, sys
p1, p2 = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 0))
s.settimeout(1.0)
def ask(ip, msg=b"who"):
    for _ in range(2):
        s.sendto(msg, (ip, 9999))
        try:
            return s.recvfrom(2048)[0].decode()
        except socket.timeout:
            pass
    return None
m1 = ask(p1)
m2 = ask(p2)
unsolicited = "-"
if m1:
    # public-2 pokes the mapping public-1 saw, from a port we never sent to; its answer
    # "poked" and the unsolicited datagram may come in either order.
    s.sendto(("poke " + m1).encode(), (p2, 9999))
    unsolicited = "no"
    try:
        while True:
            if s.recvfrom(2048)[0] == b"unsolicited":
                unsolicited = "yes"
                break
    except socket.timeout:
        pass
print(s.getsockname()[1], m1 or "none", m2 or "none", unsolicited)
EOF
  world_spawn "${W_NS[public-1]}" "$dir/echo-1.log" python3 "$dir/udp-echo.py" "$p1"
  world_spawn "${W_NS[public-2]}" "$dir/echo-2.log" python3 "$dir/udp-echo.py" "$p2"
  sleep 0.5
  printf '%-12s %-6s %-22s %-22s %-11s %s\n' peer lport "seen by public-1" "seen by public-2" unsolicited verdict
  for peer in "${W_PEERS[@]}"; do
    case $peer in public-*) continue ;; esac
    out=$(timeout 15 ip netns exec "${W_NS[$peer]}" python3 "$dir/udp-probe.py" "$p1" "$p2")
    local lport m1 m2 uns verdict=ok
    read -r lport m1 m2 uns <<<"$out"
    case ${W_KIND[$peer]} in
      fullcone) [ "$m1" = "$m2" ] && [ "${m1#*:}" = "$lport" ] && [ "$uns" = yes ] || verdict=BAD ;;
      restricted | cgnat | samehome) [ "$m1" = "$m2" ] && [ "$uns" = no ] || verdict=BAD ;;
      symmetric) [ "$m1" != none ] && [ "${m1%:*}" = "${m2%:*}" ] && [ "$m1" != "$m2" ] || verdict=BAD ;;
      udpblocked) [ "$m1" = none ] && [ "$m2" = none ] || verdict=BAD ;;
    esac
    [ "$verdict" = ok ] || bad=1
    printf '%-12s %-6s %-22s %-22s %-11s %s\n' "$peer" "$lport" "$m1" "$m2" "$uns" "$verdict"
  done
  return "$bad"
}

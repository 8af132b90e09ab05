"""Master CPU per respawn, read from /proc/<master>/schedstat around K
respawns (limiter cleared by one SIGHUP first); with a 4th argument, also
`perf record -g` of the master into /tmp/perf.data.

    python3 benches/profile/master_cpu.py rust|py N K [perf]

Paths assume benches/run.sh ran with CARGO_TARGET_DIR=target/bench-dev;
edit `cmd` otherwise."""
import os, sys, socket, time, signal, subprocess, threading
face=sys.argv[1]; n=int(sys.argv[2]); k=int(sys.argv[3])
path="/tmp/mcpu.sock"
try: os.unlink(path)
except FileNotFoundError: pass
s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(path)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8<<20)
env=dict(os.environ, BENCH_SOCK=path, BENCH_WORKERS=str(n), BENCH_WAIT_INTERVAL="0", BENCH_RELOAD="1")
cmd={"py":["/work/main/.venv-bench-ours/bin/python","/work/main/benches/app.py"],"rust":["/work/main/target/bench-dev/release/examples/bench_app"]}[face]
evs=[]; cond=threading.Condition()
def rd():
    while True:
        d=s.recv(200).decode().split()
        with cond: evs.append(d); cond.notify_all()
threading.Thread(target=rd,daemon=True).start()
def wait(pred):
    with cond:
        while not pred(): cond.wait(1)
p=subprocess.Popen(cmd, env=env, start_new_session=True)
wait(lambda: len({e[1] for e in evs if e[0]=="run"})>=n)
runs={int(e[1]):int(e[2]) for e in evs if e[0]=="run"}
time.sleep(1)
os.kill(p.pid, signal.SIGHUP)
wait(lambda: sum(1 for e in evs if e[0]=="reload")>=n)
time.sleep(0.5)
def ticks(pid):
    f=open(f"/proc/{pid}/stat").read().rsplit(")",1)[1].split(); return int(f[11])+int(f[12])
def sched(pid):
    return float(open(f"/proc/{pid}/schedstat").read().split()[0])  # ns on cpu
c0=sched(p.pid)
perf=subprocess.Popen(["perf","record","-g","-o","/tmp/perf.data","-p",str(p.pid)],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL) if len(sys.argv)>4 else None
time.sleep(1 if perf else 0)
lat=[]
for i in range(k):
    w=(i*7)%n; old=runs[w]; t0=time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    m=len(evs); os.kill(old, signal.SIGKILL)
    wait(lambda: any(e[0]=="run" and int(e[1])==w and int(e[2])!=old for e in evs[m:]))
    e=[e for e in evs[m:] if e[0]=="run" and int(e[1])==w][0]; runs[w]=int(e[2]); lat.append((int(e[3])-t0)/1e6)
    time.sleep(0.03)
c1=sched(p.pid)
if perf: perf.send_signal(signal.SIGINT); perf.wait()
lat.sort()
print(face, n, "master CPU per respawn %.0f us" % ((c1-c0)/k/1000), "latency median %.2f ms" % lat[len(lat)//2])
os.killpg(p.pid, signal.SIGKILL); p.wait()

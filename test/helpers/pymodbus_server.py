# A Modbus server from Debian's python3-pymodbus (an independent
# implementation, not ours), for tests: serves the register images given as
# JSON on the first line of standard input, then prints "ready <port>" and
# runs until killed or until its standard input closes (the test process is
# gone).
#   { "port": 0 or N, "units": { "1": { "input": [[start, [w, ...]], ...], "holding": [...] } } }
# Every further line changes registers while it runs (a meter's counters
# moving, a voltage collapsing), answered "set <n>" once applied, n counting:
#   { "unit": 1, "table": "input" | "holding" | "coils", "address": A, "values": [w, ...] }
# With "serial": { "path": "/dev/pts/N", "baud": 9600 } it is an RTU server
# on that serial line instead (a pseudo-terminal made with socat), and
# prints "ready 0".
# Registers not given read as 0 up to the highest one given; beyond it the
# server answers exception 2 (illegal data address). A unit not listed gets
# no answer at all (a meter that is not there).
import asyncio, json, os, socket, sys

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server import StartAsyncSerialServer, StartAsyncTcpServer
from pymodbus.transaction import ModbusRtuFramer


def block(ranges):
    size = max([start + len(words) for start, words in ranges], default=1)
    values = [0] * size
    for start, words in ranges:
        values[start:start + len(words)] = words
    return ModbusSequentialDataBlock(0, values)


TABLES = {"input": 4, "holding": 3, "coils": 1}


async def follow_stdin(context):
    """Apply register changes from standard input; end the process when it closes."""
    loop = asyncio.get_running_loop()
    applied = 0
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if line == "":
            os._exit(0)
        if line.strip() == "":
            continue
        change = json.loads(line)
        context[change["unit"]].setValues(TABLES[change["table"]], change["address"], change["values"])
        applied += 1
        print(f"set {applied}", flush=True)


async def main():
    spec = json.loads(sys.stdin.readline())
    slaves = {
        int(unit): ModbusSlaveContext(ir=block(u.get("input", [])), hr=block(u.get("holding", [])), co=ModbusSequentialDataBlock(0, [False] * 64), di=ModbusSequentialDataBlock(0, [False] * 64), zero_mode=True)
        for unit, u in spec["units"].items()
    }
    context = ModbusServerContext(slaves=slaves, single=False)
    asyncio.ensure_future(follow_stdin(context))
    if "serial" in spec:
        serial = spec["serial"]
        server = await StartAsyncSerialServer(context=context, framer=ModbusRtuFramer, port=serial["path"], baudrate=serial.get("baud", 9600), defer_start=True)
        await server.start()
        print("ready 0", flush=True)
        await server.serve_forever()
        return
    port = spec.get("port", 0)
    if port == 0:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
    # allow_reuse_address: a test that stops a server and starts another on its port (a meter
    # that comes back) must not wait for the old connections' TIME_WAIT.
    server = await StartAsyncTcpServer(context=context, address=("127.0.0.1", port), defer_start=True, allow_reuse_address=True)
    serving = asyncio.ensure_future(server.serve_forever())
    await asyncio.wait([server.serving, serving], return_when=asyncio.FIRST_COMPLETED)  # listening, or failed to
    if serving.done():
        serving.result()  # raises why it could not listen
    print(f"ready {port}", flush=True)
    await serving


asyncio.run(main())

// The `peergrid` command as a module to run: `node dist/daemon/main.js start …`.
// LocalCluster (the cluster tests, the benchmarks, the demo) starts its boxes
// from it, so a build in another folder (dist-x/, next to dist/) runs boxes of
// that same build. bin/peergrid.js is the installed command (it also says
// what to do when dist/ is not built yet).
import { main } from "./cli.js";

process.exitCode = await main(process.argv);

import ArgumentParser
import Foundation
import NanoNet
import NanoTensor
import MicrographIO
import Segmentation
import Preprocessing

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure inference and training speed of the pyNanoFind U-Net.",
        discussion: """
            Prints a table per kind of row (--json: one JSON object per line): memory_bandwidth \
            (GB/s of reading, of non-temporal writing and of copying 256 MiB shared among the \
            threads: the ceiling of passes bound by memory, beside fma_peak), memory_latency \
            (nanoseconds a load takes when its address comes from the load before, over working \
            sets of 256 KiB to 64 MiB, and cache_mib: the largest of them whose load took at most \
            half of the 64 MiB one's, the cache this run had: on a VM that shares its L3 with \
            other tenants, less than the CPU's), infer_tile_512 \
            (batch 1 and 8, ms_per_tile), infer_tile_stage (each stage of that pass at batch 1 \
            timed in place, to set beside conv_layer: what the pass loses between kernels; the last \
            level's stage also recomputes the first level's skip, not counted in its FLOPs), \
            infer_2048 (one 2048² pass), infer_stage_2048 (each stage of it, as for the tile), infer_4096_tiled (a 4096² \
            image through the network in exact tiles, as segment runs it where the memory does not \
            hold the whole image's pass), train_step_512 (batch 4 and \
            20, s_per_step, Adam + cross-entropy), train_stage_512 (each layer's share of that \
            batch-20 step timed in place: its forward_ms and backward_ms, and gflops_executed: \
            its convolutions' executed training FLOPs over both; then the loss and Adam), conv_layer (each convolution of a 512² forward \
            pass alone), conv_grad (each convolution's backward kernels at batch 20, median ms and \
            GFLOP/s of each), segment_1024 … segment_8192 (the whole segment pipeline on an \
            int16 MRC of that side, from reading to every output written, with each step's seconds, \
            and network_multiple: the run over the same model's network alone on as many pixels, \
            from 2048² passes timed between the runs (4 × infer_2048 for 4096²); \
            8192 not with --quick), segment_resampled_4096 (the same at a pixel size 10 % finer than \
            the model's, as most micrographs are: resampled to the model's scale and back) and \
            segment_batch_4096 (a folder of such 4096² files, two per job, segmented as `segment` \
            does: a job per two threads, as many as the memory holds, each job's files one after the other). Rows carry min and median over the timed runs, the thread \
            count and the GFLOP/s achieved: "gflops" counts the nominal direct-convolution FLOPs \
            (1.307 GFLOP per 512² tile forward, 3× that per training image), "gflops_executed" the \
            multiply-adds actually run (decoder convolutions work on the map before upsampling and \
            need fewer; tiles count their margins; the rows a decoder level run in bands of rows \
            computes twice, at the bands' edges, and the first level's skip the last level \
            recomputes from the input, about 2 % of a pass, are not counted), and its fraction_of_peak \
            against peak_gflops, the highest FMA peak measured so far in the run (again after \
            each row, once for the stage rows of a pass). The segment rows use the default model when \
            there is one; the others time the pyNanoFind network with random weights (the work \
            does not depend on the weights) unless --model is given. Run it on an otherwise idle \
            machine; medians are the numbers to compare.
            """)

    @Flag(help: "Fewer repetitions (about 20 s instead of a minute or two).") var quick = false
    @Flag(help: "One JSON object per line instead of tables.") var json = false
    @OptionGroup var threads: ThreadOptions
    @Option(help: "Model file to time (default: the pyNanoFind architecture with random weights).") var model: String?
    @Option(help: "Run only the benchmarks whose name starts with this (e.g. infer_tile_512, train_step_512, conv_layer, conv_grad).")
    var only: String?

    /// Every row name (`--only` must be a prefix of one).
    static let rowNames = ["memory_bandwidth", "memory_latency", "infer_tile_512", "infer_tile_stage", "infer_2048", "infer_stage_2048", "infer_4096_tiled", "train_step_512", "train_stage_512", "conv_layer", "conv_grad",
                           "segment_1024", "segment_2048", "segment_4096", "segment_8192", "segment_resampled_4096", "segment_batch_4096"]

    func validate() throws {
        if let only, !Bench.rowNames.contains(where: { $0.hasPrefix(only) }) {
            throw ValidationError("--only \(only) names no bench row; rows: \(Bench.rowNames.joined(separator: ", "))")
        }
    }

    func run() throws {
        threads.apply()
        let pool = ThreadPool.shared
        let net: UNet
        var benchModel = Model(network: UNet(config: .pyNanoFind, seed: 1),
                               metadata: ModelMetadata(config: .pyNanoFind, preprocessing: .robust, provenance: "random weights"))
        if model == nil, let m = try? DefaultModel.load() { benchModel = m }
        if let model {
            // As every command: a Keras .h5 is read in a child process (IsolatedReader).
            do { benchModel = try IsolatedReader.loadModel(URL(fileURLWithPath: model)); net = benchModel.network } catch { throw exitWithInputError(error) }
            // Its segment rows run the model as segment does.
            if let problem = benchModel.segmentationProblem { throw exitWithInputError(ModelFileError(file: model, reason: problem)) }
        } else {
            net = UNet(config: .pyNanoFind, seed: 1)
        }
        let engine = UNetInference(net)
        let reps = quick ? 5 : 15
        var rng = SplitMix64(seed: 3)

        let table = BenchTable(json: json)
        // The ceiling, measured first in the same run: every row's executed GFLOP/s is given as a
        // fraction of it, with the CPU and the kernels' vector ISA. It is measured again (0.15 s)
        // right after each such row, and the row is set against the highest value yet
        // (`peak_gflops`): on a machine whose clock rises during the run, rows measured once at
        // the start came out above 1 (0.97-1.04 for some conv_layer rows, Intel Xeon fam 6 mod
        // 207); the highest value only ever lowers a fraction.
        var peak = FMAPeak.measure(pool: pool)
        var warnedAbovePeak = false
        let (cpuModel, isa) = FMAPeak.cpu
        // `remeasure: false` for rows emitted back to back after one block of timing (the
        // stages of a pass): the peak measured after the block's first row serves them all.
        func emit(_ fields: [(String, Any)], remeasure: Bool = true) {
            var row = fields
            if let executed = fields.first(where: { $0.0 == "gflops_executed" })?.1 as? Double {
                if remeasure { peak = max(peak, FMAPeak.measure(pool: pool, seconds: 0.15)) }
                // A row faster than every peak measured so far: those measurements were slowed
                // (another process on the machine; seen: a first peak of 237 GFLOP/s where the
                // machine gives 510, then every conv_layer row at 1.1-1.8 of it). Measured again,
                // up to three times, before the row is set against it; said if that never held.
                for _ in 0..<3 where executed > peak { peak = max(peak, FMAPeak.measure(pool: pool, seconds: 0.3)) }
                if executed > peak && !warnedAbovePeak {
                    warnedAbovePeak = true
                    writeStandardError("warning: \(fields.first?.1 ?? "a row") ran faster than any FMA peak measured in this run (\(String(format: "%.0f", executed)) against \(String(format: "%.0f", peak)) GFLOP/s): the machine was busy while the peak was measured, so fractions of peak above 1 are not to be trusted; run again on an idle machine\n")
                }
                row += [("fraction_of_peak", executed / peak), ("peak_gflops", peak)]
            }
            row += [("isa", isa), ("cpu", cpuModel)]
            table.emit(row)
        }
        emit([("name", "fma_peak"), ("threads", pool.threadCount), ("gflops", peak)])
        func time(_ runs: Int, warmup: Int = 2, _ body: () -> Void) -> (min: Double, median: Double) {
            for _ in 0..<warmup { body() }
            var t: [Double] = []
            for _ in 0..<runs {
                let s = DispatchTime.now().uptimeNanoseconds
                body()
                t.append(Double(DispatchTime.now().uptimeNanoseconds - s) / 1e9)
            }
            return (t.min()!, median(t))
        }
        func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
        /// The convolutions of a stage named by its layers joined with "+" (a fused stage), each
        /// with whether it is the network's first (no input gradient in training).
        func convolutions(ofStage name: String) -> [(cost: ConvLayerCost, isFirst: Bool)] {
            let layers = name.split(separator: "+").map(String.init)
            return net.convCosts.enumerated().filter { layers.contains($0.element.name) }.map { ($0.element, $0.offset == 0) }
        }

        // "gflops" is the nominal direct-convolution rate (the usual way to quote this U-Net);
        // "gflops_executed" counts the multiply-adds actually run (the decoder's upsampled part
        // runs on the map before upsampling, with fewer of them).
        let flops512 = net.forwardFlops(height: 512, width: 512)
        let executed512 = net.executedForwardFlops(height: 512, width: 512)
        let trainExecuted512 = net.executedTrainingFlops(height: 512, width: 512)
        func wanted(_ name: String) -> Bool { only.map { name.hasPrefix($0) } ?? true }
        if wanted("memory_bandwidth") {
            // The other ceiling: a pass that moves more bytes per multiply-add than the FMA peak
            // and this allow together is bound by memory (the training step's full-resolution
            // layers at batch 20, a 2048² pass's maps).
            let bw = MemoryBandwidth.measure(pool: pool)
            emit([("name", "memory_bandwidth"), ("threads", pool.threadCount), ("read_gb_per_s", bw.read),
                  ("stream_write_gb_per_s", bw.write), ("copy_gb_per_s", bw.copy)])
        }
        if wanted("memory_latency") {
            // Where the caches end for this run (a VM's share of a shared L3 is not the CPU
            // model's L3): whether a pass's maps come back from cache or from memory.
            let times = MemoryLatency.measure()
            emit([("name", "memory_latency"), ("threads", 1)]
                 + times.map { (t: (kilobytes: Int, nanoseconds: Double)) -> (String, Any) in
                     (t.kilobytes >= 1024 ? "ns_\(t.kilobytes >> 10)mib" : "ns_\(t.kilobytes)kib", t.nanoseconds) }
                 + [("cache_mib", Double(MemoryLatency.effectiveCache(times)) / 1024)])
        }
        for batch in [1, 8] where wanted("infer_tile_512") {
            let x = Tensor.randomUniform(Shape(batch, 1, 512, 512), in: 0...1, rng: &rng)
            let r = time(batch == 1 ? reps * 2 : reps) { _ = engine.probabilities(x, pool: pool) }
            emit([("name", "infer_tile_512"), ("batch", batch), ("threads", pool.threadCount),
                  ("ms_per_tile", r.median * 1000 / Double(batch)), ("ms_per_tile_min", r.min * 1000 / Double(batch)),
                  ("gflops", flops512 * Double(batch) / r.median / 1e9),
                  ("gflops_executed", executed512 * Double(batch) / r.median / 1e9)])
        }
        for (row, side) in [("infer_tile_stage", 512), ("infer_stage_2048", 2048)] where wanted(row) {
            let x = Tensor.randomUniform(Shape(1, 1, side, side), in: 0...1, rng: &rng)
            for _ in 0..<2 { _ = engine.probabilities(x, pool: pool) }
            // Each stage of the same pass timed in place (median over runs), to set beside
            // the same convolution alone (`conv_layer`, at 512²): what the pass loses between
            // kernels, and for 2048² what its maps, too large for the caches, cost beside a tile's.
            var stages: [String: [Double]] = [:], order: [String] = []
            engine.stageObserver = { name, seconds in
                if stages[name] == nil { order.append(name) }
                stages[name, default: []].append(seconds)
            }
            for _ in 0..<(side > 512 ? (quick ? 3 : 5) : reps * 2) { _ = engine.probabilities(x, pool: pool) }
            engine.stageObserver = nil
            var measured = false
            for name in order {
                let t = median(stages[name]!)
                let work = convolutions(ofStage: name).reduce(0.0) { $0 + $1.cost.executedFlops(height: side, width: side) }
                var fields: [(String, Any)] = [("name", row), ("stage", name), ("threads", pool.threadCount), ("ms", t * 1000)]
                if work > 0 { fields.append(("gflops_executed", work / t / 1e9)) }
                emit(fields, remeasure: !measured)
                measured = measured || work > 0
            }
        }
        if wanted("infer_2048") {
            let x = Tensor.randomUniform(Shape(1, 1, 2048, 2048), in: 0...1, rng: &rng)
            let r = time(quick ? 2 : 5, warmup: 1) { _ = engine.probabilities(x, pool: pool) }
            emit([("name", "infer_2048"), ("batch", 1), ("threads", pool.threadCount),
                  ("ms", r.median * 1000), ("ms_min", r.min * 1000),
                  ("gflops", net.forwardFlops(height: 2048, width: 2048) / r.median / 1e9),
                  ("gflops_executed", net.executedForwardFlops(height: 2048, width: 2048) / r.median / 1e9)])
        }
        if wanted("infer_4096_tiled") {
            // The network alone over a 4096² image in exact tiles (what `segment` runs where the
            // memory does not hold the whole image's pass), warm as in a batch: the preferred
            // square tile (`ExactTiling.preferredKeptSide`), and the 3 × 3 of the earlier limit.
            let image = FloatImage(width: 4096, height: 4096, pixels: (0..<(4096 * 4096)).map { _ in rng.nextFloat() })
            let planned = ExactTiling.preferredTileSize(engine.plan)
            for tile in [planned, 1520] {
                let tiled = TiledPredictor(engine: engine, tileSize: tile)
                let tiling = ExactTiling(width: 4096, height: 4096, plan: engine.plan, tileSize: tile)
                let r = time(quick ? 2 : 3, warmup: 1) { _ = tiled.probabilities(image, pool: pool) }
                // What the tiles run, margins included (1.10 × the image's pixels for 2144² tiles),
                // but the last level (`OutputLevel`), which runs the kept rows only. As in every
                // row, the rows a level run in bands computes twice (one above and one below each
                // band) are not counted.
                let lastLevel = engine.plan.lastLevelRunsInBands
                    ? Set([engine.plan.decoders[0].first.name, engine.plan.decoders[0].second.name, engine.plan.head.name]) : []
                let executed = tiling.rows.reduce(0.0) { sum, row in
                    let kept = min(row.keep.upperBound, 4096) - row.keep.lowerBound
                    return tiling.columns.reduce(sum) { sum, column in
                        net.convCosts.reduce(sum) {
                            $0 + $1.executedFlops(height: row.size, width: column.size)
                                * (lastLevel.contains($1.name) ? Double(kept) / Double(row.size) : 1)
                        }
                    }
                }
                emit([("name", "infer_4096_tiled"), ("tile", tiling.columns[0].size), ("tiles", tiling.count), ("threads", pool.threadCount),
                      ("ms", r.median * 1000), ("ms_min", r.min * 1000),
                      ("gflops_executed", executed / r.median / 1e9)])
            }
        }
        let hugePages = BufferPool.hugePages
        BufferPool.hugePages = wanted("train_step_512") || wanted("train_stage_512")  // as `train` runs (see BufferPool.hugePages)
        for batch in [4, 20] where wanted("train_step_512") {
            let trainNet = UNet(config: net.config, seed: 2)
            let adam = Adam(learningRate: 1e-4)
            let x = Tensor.randomUniform(Shape(batch, 1, 512, 512), in: 0...1, rng: &rng)
            let labels = Tensor(Shape(batch, 1, 512, 512))
            for k in 0..<labels.count { labels.data[k] = rng.nextFloat() < 0.3 ? 1 : 0 }
            var step: UInt64 = 0
            let r = time(quick ? 2 : 5, warmup: 1) {
                let tape = Tape(pool: pool)
                let logits = trainNet.forward(Variable(x), tape: tape, training: true, dropoutSeed: step)
                tape.backward(tape.loss(.crossEntropy, logits: logits, labels: labels))
                adam.update(trainNet.parameters)
                step += 1
                if ProcessInfo.processInfo.environment["NANOFIND_BENCH_DEBUG"] != nil {
                    writeStandardError("step \(step): \(BufferPool.allocatedFromSystem >> 20) MiB from the system\n")
                }
            }
            emit([("name", "train_step_512"), ("batch", batch), ("threads", pool.threadCount),
                  ("s_per_step", r.median), ("s_per_step_min", r.min),
                  ("gflops", 3 * flops512 * Double(batch) / r.median / 1e9),
                  ("gflops_executed", trainExecuted512 * Double(batch) / r.median / 1e9)])
        }
        if wanted("train_stage_512") {
            // Each layer's share of a batch-20 step, timed in place (`Tape.stageObserver`): its
            // forward and its backward steps, and its convolutions' training FLOPs over both,
            // medians over the steps; then the loss and the optimiser. Where the step's time goes
            // beside each layer's work (the full-resolution layers are bound by memory).
            let batch = 20
            let trainNet = UNet(config: net.config, seed: 2)
            let adam = Adam(learningRate: 1e-4)
            let x = Tensor.randomUniform(Shape(batch, 1, 512, 512), in: 0...1, rng: &rng)
            let labels = Tensor(Shape(batch, 1, 512, 512))
            for k in 0..<labels.count { labels.data[k] = rng.nextFloat() < 0.3 ? 1 : 0 }
            var forward: [String: [Double]] = [:], backward: [String: [Double]] = [:], order: [String] = []
            let runs = quick ? 3 : 5
            for step in 0..<(runs + 1) {  // the first step takes its buffers from the system: not counted
                var f: [String: Double] = [:], b: [String: Double] = [:]
                let tape = Tape(pool: pool)
                tape.stageObserver = { name, isBackward, seconds in
                    if isBackward { b[name, default: 0] += seconds } else { f[name, default: 0] += seconds }
                    if step == 0 && !order.contains(name) { order.append(name) }
                }
                let logits = trainNet.forward(Variable(x), tape: tape, training: true, dropoutSeed: UInt64(step))
                tape.beginStage("loss")
                tape.backward(tape.loss(.crossEntropy, logits: logits, labels: labels))
                let start = DispatchTime.now().uptimeNanoseconds
                adam.update(trainNet.parameters)
                f["adam"] = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                if step == 0 { order.append("adam"); continue }
                for name in order { forward[name, default: []].append(f[name] ?? 0); backward[name, default: []].append(b[name] ?? 0) }
            }
            var measured = false
            for name in order {
                let fm = median(forward[name] ?? [0]), bm = median(backward[name] ?? [0])
                let work = convolutions(ofStage: name)
                    .reduce(0.0) { $0 + $1.cost.executedTrainingFlops(height: 512, width: 512, isFirst: $1.isFirst) } * Double(batch)
                var fields: [(String, Any)] = [("name", "train_stage_512"), ("stage", name), ("batch", batch),
                                               ("threads", pool.threadCount), ("forward_ms", fm * 1000), ("backward_ms", bm * 1000)]
                if work > 0 && fm + bm > 0 { fields.append(("gflops_executed", work / (fm + bm) / 1e9)) }
                emit(fields, remeasure: !measured)
                measured = measured || work > 0
            }
        }
        BufferPool.hugePages = hugePages
        // Each 3×3 convolution of a 512² forward pass alone (BN folded, as inference runs it: a
        // decoder's first convolution as the direct skip part plus the upsampled part on the map
        // before upsampling).
        for cost in net.convCosts where cost.kernel == 3 && wanted("conv_layer") {
            let side = 512 / cost.scaleDivisor
            let cs = cost.cin - cost.upsampledInputs
            let x = Tensor.randomUniform(Shape(1, cs, side, side), in: -1...1, rng: &rng)
            let w = Tensor.randomUniform(Shape(cost.cout, cost.cin, 3, 3), in: -0.1...0.1, rng: &rng)
            let packed = Conv3x3.PackedWeights(oihw: w.data, bias: nil, cout: cost.cout, allInputs: cost.cin, inputChannels: 0..<cs)
            let padded = PaddedPlanes.from(x, pool: pool)
            let y = Tensor(Shape(1, cost.cout, side, side), zeroed: false)
            var run: () -> Void = { Conv3x3.forward(padded, packed, into: y, relu: true, pool: pool) }
            if cost.upsampledInputs > 0 {
                let low = PaddedPlanes.from(Tensor.randomUniform(Shape(1, cost.upsampledInputs, side / 2, side / 2), in: -1...1, rng: &rng),
                                            pool: pool)
                let phase = UpsampledConv3x3.PhaseWeights(oihw: w.data, cout: cost.cout, allInputs: cost.cin,
                                                          inputChannels: cs..<cost.cin)
                run = {
                    Conv3x3.forward(padded, packed, into: y, relu: false, pool: pool)
                    UpsampledConv3x3.forward(low, phase, addingInto: y, relu: true, pool: pool)
                }
            }
            let cpu0 = threadCPUSeconds()
            let r = time(reps * 2) { run() }
            let cpuPerRun = (threadCPUSeconds() - cpu0) / Double(reps * 2 + 2)
            let pr = time(reps * 2) { padded.fill(from: [.init(x)], pool: pool) }
            var fields: [(String, Any)] = [
                ("name", "conv_layer"), ("layer", cost.name), ("cin", cost.cin), ("cout", cost.cout), ("size", side),
                ("threads", pool.threadCount), ("ms", r.median * 1000), ("ms_min", r.min * 1000), ("pad_ms", pr.median * 1000),
                ("gflops", cost.flops(height: 512, width: 512) / r.median / 1e9),
                ("gflops_executed", cost.executedFlops(height: 512, width: 512) / r.median / 1e9)]
            if pool.threadCount == 1 {  // CPU time excludes what other processes take: the kernel's own rate
                fields.append(("gflops_executed_per_cpu_second", cost.executedFlops(height: 512, width: 512) / cpuPerRun / 1e9))
            }
            emit(fields)
        }
        // The backward kernels of each 3×3 convolution at training's batch of 20 (random data):
        // the direct part's weight and data gradients; for a decoder's first convolution also its
        // upsampled part's (on the map before upsampling: 9 multiply-adds per low-resolution pixel
        // each, counted as executed) and the output gradient's box sums they both read.
        for cost in net.convCosts where cost.kernel == 3 && wanted("conv_grad") {
            let nb = 20
            let side = 512 / cost.scaleDivisor
            let cs = cost.cin - cost.upsampledInputs
            let x = PaddedPlanes.from(Tensor.randomUniform(Shape(nb, cs, side, side), in: -1...1, rng: &rng), pool: pool)
            let g = PaddedPlanes.from(Tensor.randomUniform(Shape(nb, cost.cout, side, side), in: -1...1, rng: &rng), pool: pool)
            let w = Tensor.randomUniform(Shape(cost.cout, cost.cin, 3, 3), in: -0.1...0.1, rng: &rng)
            let dW = Tensor(Shape(cost.cout, cs, 3, 3)), dB = Tensor(Shape(1, 1, 1, cost.cout))
            let rw = time(reps) { Conv3x3.backwardWeights(x: x, dY: g, dW: dW.data, dB: dB.data, pool: pool) }
            let dx = Tensor(Shape(nb, cs, side, side), zeroed: false)
            let wt = Conv3x3.PackedWeights.transposedFlipped(oihw: w.data, cout: cost.cout, cin: cost.cin, inputChannels: 0..<cs)
            let rd = time(reps) { Conv3x3.backwardData(g, weights: wt, into: dx, pool: pool) }
            let direct = 2.0 * 9 * Double(cs * cost.cout * side * side * nb)
            var fields: [(String, Any)] = [("name", "conv_grad"), ("layer", cost.name), ("batch", nb), ("cin", cs), ("cout", cost.cout), ("size", side),
                ("threads", pool.threadCount),
                ("wgrad_ms", rw.median * 1000), ("wgrad_gflops", direct / rw.median / 1e9),
                ("dgrad_ms", rd.median * 1000), ("dgrad_gflops", direct / rd.median / 1e9)]
            if cost.upsampledInputs > 0 {
                let cu = cost.upsampledInputs
                let low = PaddedPlanes.from(Tensor.randomUniform(Shape(nb, cu, side / 2, side / 2), in: -1...1, rng: &rng), pool: pool)
                let boxSums = UpsampledConv3x3.boxSums(g, pool: pool)
                let dWu = Tensor(Shape(cost.cout, cu, 3, 3))
                let ru = time(reps) { UpsampledConv3x3.backwardWeights(low: low, boxSums: boxSums, dW: dWu.data, pool: pool) }
                let dl = Tensor(Shape(nb, cu, side / 2, side / 2), zeroed: false)
                let dwts = UpsampledConv3x3.DataWeights(oihw: w.data, cout: cost.cout, allInputs: cost.cin, inputChannels: cs..<cost.cin)
                let rud = time(reps) { UpsampledConv3x3.backwardData(boxSums: boxSums, dwts, into: dl, pool: pool) }
                let rb = time(reps) { _ = UpsampledConv3x3.boxSums(g, pool: pool) }
                let lowPix = Double(cu * cost.cout * side * side / 4 * nb)
                fields += [("up_wgrad_ms", ru.median * 1000), ("up_wgrad_gflops", 18 * lowPix / ru.median / 1e9),
                           ("up_dgrad_ms", rud.median * 1000), ("up_dgrad_gflops", 18 * lowPix / rud.median / 1e9),
                           ("box_sums_ms", rb.median * 1000)]
            }
            emit(fields)
        }
        if Bench.rowNames.filter({ $0.hasPrefix("segment_") }).contains(where: wanted) { prepareMemoryForSegmenting() }  // as `segment` runs
        for side in [1024, 2048, 4096, 8192] where wanted("segment_\(side)") && (side <= 4096 || !quick) {
            do { emit(try segmentRow(side: side, model: benchModel, pool: pool, runs: quick ? 3 : 5)) } catch { throw exitWithInputError(error) }
        }
        if wanted("segment_resampled_4096") {
            do {
                emit(try segmentRow(side: 4096, pixelScale: 0.9, model: benchModel, pool: pool, runs: quick ? 3 : 5))
            } catch { throw exitWithInputError(error) }
        }
        if wanted("segment_batch_4096") {
            do { emit(try segmentBatchRow(side: 4096, model: benchModel, pool: pool)) } catch { throw exitWithInputError(error) }
        }
    }

    /// The whole `segment` pipeline on a side×side int16 MRC of fringed discs on noise: from
    /// reading the file to every output written, with the time of each step. The file's pixel
    /// size is the model's times `pixelScale` (other than 1: resampled to the model's and back).
    func segmentRow(side: Int, pixelScale: Double = 1, model: Model, pool: ThreadPool, runs: Int) throws -> [(String, Any)] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nanofind-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("bench_\(side).mrc")
        let pixelSize = (model.metadata.trainingPixelSizeNm ?? 0.05) * pixelScale
        try MRCWriter.write(SyntheticMicrograph.discs(side: side, pixelSizeNm: pixelSize), to: input)
        // One cold run, then `runs - 1` more as a batch would run its next files (the network's
        // buffers and the freed arrays reused); each run writes into a folder of its own, kept
        // until the row ends, so every output is a new file as in a batch. The row gives the
        // median run (and its breakdown), the fastest, and the first. After each run, the same
        // model's network alone on a 2048² image (warm), so that the pipeline's time is set
        // beside the network's for as many pixels in the same minutes: `network_multiple`, the
        // median run over (side / 2048)² of those passes' median (4 × infer_2048 for 4096²).
        var results: [(seconds: Double, summary: ImageSummary)] = []
        let engine = Segmenter(model: model).predictor.engine
        var rng = SplitMix64(seed: 4)
        let x2048 = Tensor.randomUniform(Shape(1, 1, 2048, 2048), in: 0...1, rng: &rng)
        _ = engine.probabilities(x2048, pool: pool)
        var passes: [Double] = []
        for run in 0..<runs {
            let out = dir.appendingPathComponent("out\(run)")
            try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
            let batch = BatchSegmentation(segmenter: Segmenter(model: model), settings: BatchSettings(outputDir: out), modelName: "bench")
            let start = DispatchTime.now().uptimeNanoseconds
            let summary = try batch.process(input, pool: pool)[0]
            results.append((Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, summary))
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = engine.probabilities(x2048, pool: pool)
            passes.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        let sorted = results.sorted { $0.seconds < $1.seconds }
        let (seconds, summary) = sorted[(sorted.count - 1) / 2]
        let pass2048 = passes.sorted()[(passes.count - 1) / 2]
        let name = pixelScale == 1 ? "segment_\(side)" : "segment_resampled_\(side)"
        var fields: [(String, Any)] = [("name", name), ("threads", pool.threadCount), ("s", seconds),
                                       ("s_min", sorted[0].seconds), ("s_first", results[0].seconds), ("runs", runs),
                                       ("network_s_runs", results.map { String(format: "%.3f", $0.summary.timings["network"] ?? 0) }.joined(separator: " ")),
                                       ("infer_2048_ms", pass2048 * 1000),
                                       ("network_multiple", seconds / (pass2048 * Double(side * side) / Double(2048 * 2048))),
                                       ("megapixels_per_s", Double(side * side) / seconds / 1e6), ("particles", summary.particles)]
        for key in ["read", "outside", "resample", "preprocess", "network", "resample_back", "threshold", "particles", "measure_and_write", "write_mask_png",
                    "write_mask_tif", "write_labels_tif", "write_prob", "overlay_background", "overlay_outlines", "write_overlay", "write_tables"] {
            fields.append((key + "_s", summary.timings[key] ?? 0))
        }
        return fields
    }
}

extension Bench {
    /// `segment`'s default over a folder of side×side int16 MRCs (two per job; a job per
    /// `BatchSegmentation.threadsPerJob` threads, as many as the memory holds):
    /// seconds per file and megapixels per second once every job is busy, as a batch runs.
    func segmentBatchRow(side: Int, model: Model, pool: ThreadPool) throws -> [(String, Any)] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nanofind-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let first = dir.appendingPathComponent("bench_0.mrc")
        try MRCWriter.write(SyntheticMicrograph.discs(side: side, pixelSizeNm: model.metadata.trainingPixelSizeNm ?? 0.05), to: first)
        let segmenter = Segmenter(model: model)
        let jobs = BatchSegmentation.jobs(nil, files: Int.max, threads: pool.threadCount, segmenter: segmenter), count = 2 * jobs
        var files = [first]
        for k in 1..<count {
            let f = dir.appendingPathComponent("bench_\(k).mrc")
            try FileManager.default.copyItem(at: first, to: f)
            files.append(f)
        }
        let out = dir.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let batch = BatchSegmentation(segmenter: segmenter, settings: BatchSettings(outputDir: out), modelName: "bench")
        final class Failures: @unchecked Sendable { var list: [Error] = [] }
        let failures = Failures()
        let start = DispatchTime.now().uptimeNanoseconds
        batch.run(files, jobs: jobs, pool: pool) { _, outcome, _ in if case .failed(let e) = outcome { failures.list.append(e) } }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        if let e = failures.list.first { throw e }
        return [("name", "segment_batch_\(side)"), ("files", count), ("jobs", jobs), ("threads", pool.threadCount),
                ("s", seconds), ("s_per_file", seconds / Double(count)),
                ("megapixels_per_s", Double(count * side * side) / seconds / 1e6)]
    }
}

/// Bench output: a table per kind of row (a header whenever the row's name or columns change),
/// or one JSON object per line with --json.
final class BenchTable {
    let json: Bool
    var lastKeys: [String] = []
    init(json: Bool) { self.json = json }

    func text(_ value: Any) -> String {
        switch value {
        case let s as String: return s
        case let d as Double: return String(format: "%.4g", d)
        default: return "\(value)"
        }
    }

    func emit(_ fields: [(String, Any)]) {
        if json {
            let parts = fields.map { key, value -> String in
                let v = value is String ? "\"\(value)\"" : text(value)
                return "\"\(key)\":\(v)"
            }
            print("{" + parts.joined(separator: ",") + "}")
            return
        }
        let keys = fields.map(\.0)
        let widths = fields.map { max($0.0.count, text($0.1).count, 8) }
        if keys != lastKeys {
            print("")
            print(zip(keys, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  "))
            lastKeys = keys
        }
        print(zip(fields, widths).map { field, w in
            let t = text(field.1)
            return String(repeating: " ", count: max(0, w - t.count)) + t
        }.joined(separator: "  "))
        fflush(nil)
    }
}

/// CPU time of the calling thread: excludes the time other processes take from it, so on a busy
/// machine it shows what a kernel achieves while it runs.
func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

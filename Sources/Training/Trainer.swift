import Foundation
import NanoNet
import NanoTensor
import Preprocessing
import Segmentation

/// A labelled image prepared for the network (the recipe applied once, before any crop).
public struct PreparedImage: Sendable {
    public var name: String
    public var image: FloatImage
    public var mask: BinaryMask
    public var pixelSizeNm: Double?
    public var group: String
    /// The raw image's zero in the prepared image's units (`InputRecipe.rawZeroOffset`), for
    /// the illumination augmentation.
    public var rawZero: Float

    public init(_ l: LabelledImage, recipe: InputRecipe) {
        name = l.name; mask = l.mask; pixelSizeNm = l.pixelSizeNm; group = l.group
        (image, rawZero) = recipe.prepare(l.image)
    }
}

/// One line of the training log (`MODEL_train_log.csv`).
public struct EpochRecord: Codable, Sendable, Equatable {
    public var epoch: Int
    public var step: Int
    public var trainLoss: Double
    public var trainDice: Double
    public var validationLoss: Double
    public var validationDice: Double
    public var samplesPerSecond: Double
    public var learningRate: Double
    /// Seconds in the epoch's training steps (what `samplesPerSecond` divides by).
    public var seconds: Double
    /// Wall-clock seconds since the previous epoch's record: the steps, the checkpoints written
    /// since, and this epoch's validation. Nil in records from checkpoints that predate it.
    public var wallSeconds: Double?

    public static let csvHeader = "epoch,step,train_loss,train_dice,val_loss,val_dice,samples_per_s,lr,train_s,wall_s"
    public var csvLine: String {
        String(format: "%d,%d,%.6f,%.5f,%.6f,%.5f,%.2f,%.3g,%.1f,%@", epoch, step, trainLoss, trainDice, validationLoss,
               validationDice, samplesPerSecond, learningRate, seconds, wallSeconds.map { String(format: "%.1f", $0) } ?? "")
    }
}

/// What the trainer reports while it runs.
public enum TrainingEvent: Sendable {
    /// Within an epoch: step (1-based within the epoch), running mean loss and dice, samples/s.
    case step(epoch: Int, step: Int, of: Int, loss: Double, dice: Double, samplesPerSecond: Double)
    case epochEnd(EpochRecord, improved: Bool)
    case earlyStop(epoch: Int)
    case message(String)
}

/// Where a run stands: saved with every checkpoint so that `--resume` continues exactly.
struct TrainerState: Codable {
    var settings: TrainingSettings
    var stepsDone = 0
    var records: [EpochRecord] = []
    var bestValidationLoss = Double.infinity
    var bestEpoch = 0
    var epochsWithoutImprovement = 0
    var stopped = false
    /// Running sums of the epoch in progress.
    var epochLossSum = 0.0
    var epochCounts = ConfusionCounts()
    var epochSeconds = 0.0
    /// Wall-clock seconds of the epoch in progress so far (nil: none yet, or an older checkpoint).
    var epochWallSeconds: Double?
    /// The training images' median pixel size (nm), recorded in the model (and in a model read
    /// from a checkpoint) so that segment resamples to it. Nil: unknown.
    var trainingPixelSizeNm: Double?
    /// Early stopping's reference: the validation loss of the last epoch that improved by more
    /// than min_delta (Keras' EarlyStopping.best). Nil in older checkpoints (then the best loss).
    var earlyStopReference: Double?
    /// The training and validation images' names, in order: a resume must see the same.
    var imageNames: [String]?
}

/// Trains a U-Net on prepared images: random crops drawn per step from a generator seeded by
/// (seed, step), Adam, validation on whole images after each epoch with inference-mode batch
/// norm, early stopping, the best epoch's weights kept, then the threshold that maximises pixel
/// accuracy on the training images. Everything a run depends on is a function of the seed and the
/// step, and a checkpoint holds the weights, Adam's moments and the state: a resumed run (after
/// any interruption, kill -9 included) ends with the same weights, bit for bit.
public final class Trainer {
    public let settings: TrainingSettings
    public let train: [PreparedImage]
    public let validation: [PreparedImage]
    public let checkpointURL: URL
    public var checkpointEvery = 100
    public var pool: ThreadPool = .shared
    public var report: (TrainingEvent) -> Void = { _ in }
    public let network: UNet
    let adam: Adam
    var state: TrainerState
    var bestWeights: [[Float]]

    /// `initial`: a network of the settings' shape whose weights and running statistics the
    /// run starts from (fine-tuning), instead of the seed's random ones.
    public init(settings: TrainingSettings, train: [PreparedImage], validation: [PreparedImage], checkpointURL: URL,
                initial: UNet? = nil) {
        self.settings = settings; self.train = train; self.validation = validation; self.checkpointURL = checkpointURL
        network = UNet(config: settings.config, seed: settings.seed)
        if let initial {
            require(initial.config == settings.config, "Trainer: the initial network is \(initial.config), the settings' \(settings.config)")
            for ((_, to), (_, from)) in zip(network.namedTensors, initial.namedTensors) { to.assign(from: from.array) }
        }
        adam = Adam(learningRate: settings.learningRate)
        state = TrainerState(settings: settings)
        state.imageNames = Trainer.names(train: train, validation: validation)
        bestWeights = network.namedTensors.map { $0.1.array }
    }

    /// Keras' EarlyStopping (mode min) for one epoch's loss: an improvement is a loss below the
    /// reference by more than `minDelta`, and only an improvement moves the reference (a smaller
    /// decrease neither counts nor resets it).
    public static func earlyStopping(reference: Double, loss: Double, minDelta: Double) -> (improved: Bool, reference: Double) {
        loss < reference - minDelta ? (true, loss) : (false, reference)
    }

    /// The images a run trains and validates on, in order, as a checkpoint records them.
    static func names(train: [PreparedImage], validation: [PreparedImage]) -> [String] {
        train.map { "train: \($0.group)/\($0.name)" } + validation.map { "validation: \($0.group)/\($0.name)" }
    }

    /// A generator for one step's draws (or any other numbered task) of this run.
    static func stream(_ seed: UInt64, _ index: Int, _ salt: UInt64 = 0) -> SeededRandom {
        SeededRandom(seed: seed &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(index) &* 0xD1B5_4A32_D192_ED03 ^ salt)
    }

    // MARK: The loop

    /// Trains to the end (or to early stopping), leaving the best epoch's weights in `network`.
    public func run() throws {
        // The same activation buffers serve every step: huge pages pay (see BufferPool.hugePages);
        // whatever runs after training (one pass over fresh buffers) gets the caller's setting back.
        let hugePages = BufferPool.hugePages
        BufferPool.hugePages = true
        defer { BufferPool.hugePages = hugePages }
        let total = settings.epochs * settings.stepsPerEpoch
        let sampler = CropSampler(size: settings.tile, preset: settings.augment, placement: settings.crops)
        let b = settings.batchSize, t = settings.tile
        let x = Tensor(Shape(b, 1, t, t), zeroed: false), labels = Tensor(Shape(b, 1, t, t), zeroed: false)
        var sinceCheckpoint = 0
        while !state.stopped && state.stepsDone < total {
            let step = state.stepsDone
            let start = DispatchTime.now().uptimeNanoseconds
            // Wall time counted into the epoch from here (endEpoch moves it past its own record).
            var counted = start
            var rng = Trainer.stream(settings.seed, step)
            // Which image (each equally often, whatever its size, as Keras' generator takes each
            // image once an epoch) and which generator each crop gets are drawn in order; the crops are
            // then cut in parallel, each from its own generator, so the batch is the same for
            // any thread count.
            let picks = (0..<b).map { _ in (rng.nextInt(below: train.count), rng.fork()) }
            let images = train
            pool.parallelFor(b) { i, _ in
                var crop = picks[i].1
                let picked = images[picks[i].0]
                sampler.sample(picked.image, picked.mask, rawZero: picked.rawZero, rng: &crop, x: x.plane(i, 0), t: labels.plane(i, 0))
            }
            let tape = Tape(pool: pool)
            let logits = network.forward(Variable(x), tape: tape, training: true, dropoutSeed: rng.next())
            let loss = tape.loss(settings.loss, logits: logits, labels: labels)
            tape.backward(loss)
            adam.learningRate = settings.learningRate(atStep: step)
            adam.update(network.parameters)
            state.epochCounts = state.epochCounts + Trainer.counts(logits: logits.value, labels: labels)
            state.epochLossSum += Double(loss.value[0, 0, 0, 0])
            state.epochSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            state.stepsDone += 1
            let inEpoch = (step % settings.stepsPerEpoch) + 1
            report(.step(epoch: step / settings.stepsPerEpoch + 1, step: inEpoch, of: settings.stepsPerEpoch,
                         loss: state.epochLossSum / Double(inEpoch), dice: state.epochCounts.dice,
                         samplesPerSecond: Double(inEpoch * b) / max(state.epochSeconds, 1e-9)))
            if inEpoch == settings.stepsPerEpoch {
                try endEpoch(wallSince: &counted)
                sinceCheckpoint = 0
                try saveCheckpoint()
            } else {
                sinceCheckpoint += 1
                if sinceCheckpoint >= checkpointEvery { sinceCheckpoint = 0; try saveCheckpoint() }
            }
            state.epochWallSeconds = (state.epochWallSeconds ?? 0) + Double(DispatchTime.now().uptimeNanoseconds - counted) / 1e9
        }
        restore(bestWeights)
    }

    /// Pixel counts of the batch's prediction at p > 0.5 (logit 1 > logit 0).
    static func counts(logits: Tensor, labels: Tensor) -> ConfusionCounts {
        var c = ConfusionCounts()
        let s = logits.shape
        for i in 0..<s.n {
            let z0 = logits.plane(i, 0), z1 = logits.plane(i, 1), l = labels.plane(i, 0)
            for k in 0..<s.plane {
                switch (z1[k] > z0[k], l[k] != 0) {
                case (true, true): c.truePositive += 1
                case (true, false): c.falsePositive += 1
                case (false, false): c.trueNegative += 1
                case (false, true): c.falseNegative += 1
                }
            }
        }
        return c
    }

    /// Ends the epoch: validation, the record (its wall time: what `state.epochWallSeconds` holds
    /// plus the time since `counted`, which is then moved to now), early stopping.
    func endEpoch(wallSince counted: inout UInt64) throws {
        let epoch = state.stepsDone / settings.stepsPerEpoch
        let (valLoss, valCounts) = validationScores()
        let now = DispatchTime.now().uptimeNanoseconds
        let wall = (state.epochWallSeconds ?? 0) + Double(now - counted) / 1e9
        counted = now
        state.epochWallSeconds = 0
        let record = EpochRecord(epoch: epoch, step: state.stepsDone, trainLoss: state.epochLossSum / Double(settings.stepsPerEpoch),
                                 trainDice: state.epochCounts.dice, validationLoss: valLoss, validationDice: valCounts.dice,
                                 samplesPerSecond: Double(settings.stepsPerEpoch * settings.batchSize) / max(state.epochSeconds, 1e-9),
                                 learningRate: Double(settings.learningRate(atStep: state.stepsDone - 1)), seconds: state.epochSeconds,
                                 wallSeconds: wall)
        state.records.append(record)
        state.epochLossSum = 0; state.epochCounts = ConfusionCounts(); state.epochSeconds = 0
        // Keras' EarlyStopping (min_delta; its reference moves only on such an improvement) and
        // ModelCheckpoint(save_best_only: any lower loss) on the validation loss; without
        // validation images the last epoch counts as the best.
        let improved: Bool
        if validation.isEmpty {
            improved = true
        } else {
            let step = Trainer.earlyStopping(reference: state.earlyStopReference ?? state.bestValidationLoss, loss: valLoss,
                                             minDelta: settings.minDelta)
            improved = step.improved; state.earlyStopReference = step.reference
        }
        if improved || valLoss < state.bestValidationLoss {
            state.bestValidationLoss = validation.isEmpty ? state.bestValidationLoss : valLoss
            state.bestEpoch = epoch
            bestWeights = network.namedTensors.map { $0.1.array }
        }
        state.epochsWithoutImprovement = improved ? 0 : state.epochsWithoutImprovement + 1
        report(.epochEnd(record, improved: state.bestEpoch == epoch))
        if !validation.isEmpty && state.epochsWithoutImprovement >= settings.patience {
            state.stopped = true
            report(.earlyStop(epoch: epoch))
        }
    }

    /// Mean cross-entropy (p floored as in training, `ChannelKernels.crossEntropyFloor`) and pixel
    /// counts (p > 0.5) over the whole validation images, batch norm in inference mode.
    public func validationScores() -> (loss: Double, counts: ConfusionCounts) {
        guard !validation.isEmpty else { return (.nan, ConfusionCounts()) }
        let predictor = TiledPredictor(engine: UNetInference(network), tileSize: 1024)
        var loss = 0.0, pixels = 0
        var counts = ConfusionCounts()
        for v in validation {
            let p = predictor.probabilities(v.image, pool: pool)
            for (q, l) in zip(p.pixels, v.mask.values) {
                let pt = Double(l != 0 ? q : 1 - q)
                loss -= log(max(pt, Double(ChannelKernels.crossEntropyFloor)))
            }
            pixels += p.count
            counts = counts + ConfusionCounts(predicted: BinaryMask(p, threshold: 0.5), truth: v.mask)
        }
        return (loss / Double(max(1, pixels)), counts)
    }

    /// The threshold that maximises pixel accuracy on the training images (whole images).
    public func chooseThreshold() -> (threshold: Float, accuracy: Double) {
        let predictor = TiledPredictor(engine: UNetInference(network), tileSize: 1024)
        var search = ThresholdSearch()
        for image in train { search.add(probability: predictor.probabilities(image.image, pool: pool).pixels, truth: image.mask) }
        return search.best()
    }

    public var records: [EpochRecord] { state.records }
    public var bestEpoch: Int { state.bestEpoch }
    public var stepsDone: Int { state.stepsDone }
    /// The training images' median pixel size, kept in the checkpoint (see `bestModel`).
    public var trainingPixelSizeNm: Double? {
        get { state.trainingPixelSizeNm }
        set { state.trainingPixelSizeNm = newValue }
    }

    func restore(_ weights: [[Float]]) {
        for ((_, t), w) in zip(network.namedTensors, weights) { t.assign(from: w) }
    }

    // MARK: Checkpoints

    /// JSON for the state, infinities and NaN (no validation yet) spelled out.
    static var stateEncoder: JSONEncoder {
        let e = JSONEncoder()
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return e
    }
    static var stateDecoder: JSONDecoder {
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return d
    }

    func saveCheckpoint() throws {
        var entries: [SafeTensorsFile.Entry] = []
        for (i, (name, t)) in network.namedTensors.enumerated() {
            entries.append(.init(name: "net/\(name)", shape: [t.count], values: t.array))
            entries.append(.init(name: "best/\(name)", shape: [t.count], values: bestWeights[i]))
        }
        let (adamStep, m, v) = adam.state(of: network.parameters)
        for (i, (mi, vi)) in zip(m, v).enumerated() {
            entries.append(.init(name: "adam.m/\(i)", shape: [mi.count], values: mi))
            entries.append(.init(name: "adam.v/\(i)", shape: [vi.count], values: vi))
        }
        let stateJSON = String(decoding: try Trainer.stateEncoder.encode(state), as: UTF8.self)
        let data = try SafeTensorsFile.encode(entries, metadata: ["trainer": stateJSON, "adam_step": "\(adamStep)"])
        try SafeTensorsFile.write(data, to: checkpointURL)
    }

    /// Continues from `checkpointURL`; the settings must be the ones the checkpoint was made with.
    public func resume() throws {
        let path = checkpointURL.path
        guard let bytes = try? Data(contentsOf: checkpointURL) else {
            throw DatasetError(file: path, reason: "no checkpoint to resume from")
        }
        let (entries, meta) = try SafeTensorsFile.decode(bytes, file: path)
        guard let text = meta["trainer"], let saved = try? Trainer.stateDecoder.decode(TrainerState.self, from: Data(text.utf8)),
              let adamStep = meta["adam_step"].flatMap(Int.init) else {
            throw DatasetError(file: path, reason: "is not a NanoFind training checkpoint")
        }
        guard saved.settings == settings else {
            let then = saved.settings.asFlags, now = settings.asFlags
            let differing = Set(then.keys).union(now.keys).sorted().filter { then[$0] != now[$0] }
                .map { "--\($0) \(then[$0] ?? "unset") there, \(now[$0] ?? "unset") now" }
            throw DatasetError(file: path, reason: "was made with other settings (\(differing.isEmpty ? "the same flags, another model shape" : differing.joined(separator: "; "))); resume with the same flags, or start afresh without --resume")
        }
        // The same images in the same split and order, or the steps would draw other crops and
        // the best validation loss would compare different images.
        if let names = saved.imageNames, names != Trainer.names(train: train, validation: validation) {
            throw DatasetError(file: path, reason: "was made on other training or validation images (added, removed or reordered); resume with the same data, or start afresh without --resume")
        }
        func values(_ name: String, _ count: Int) throws -> [Float] {
            guard let e = entries[name], e.values.count == count else {
                throw DatasetError(file: path, reason: "tensor \(name) is missing or has the wrong size")
            }
            return e.values
        }
        var best: [[Float]] = []
        for (name, t) in network.namedTensors {
            let v = try values("net/\(name)", t.count)
            t.assign(from: v)
            best.append(try values("best/\(name)", t.count))
        }
        let params = network.parameters
        let m = try params.indices.map { try values("adam.m/\($0)", params[$0].value.count) }
        let v = try params.indices.map { try values("adam.v/\($0)", params[$0].value.count) }
        adam.restore(step: adamStep, m: m, v: v, for: params)
        bestWeights = best
        state = saved
        state.imageNames = state.imageNames ?? Trainer.names(train: train, validation: validation)
    }

    /// The best epoch's weights of a run in progress (or interrupted), from its checkpoint, as a
    /// model with threshold 0.5 (provisional: the threshold search runs at the end of training)
    /// and the training images' pixel size (when the checkpoint records it).
    public static func bestModel(fromCheckpoint url: URL) throws -> Model {
        guard FileManager.default.fileExists(atPath: url.path) else { throw DatasetError(file: url.path, reason: "no such file") }
        guard let bytes = try? Data(contentsOf: url) else { throw DatasetError(file: url.path, reason: "cannot be read") }
        let (entries, meta) = try SafeTensorsFile.decode(bytes, file: url.path)
        guard let text = meta["trainer"], let state = try? stateDecoder.decode(TrainerState.self, from: Data(text.utf8)) else {
            throw DatasetError(file: url.path, reason: "is not a NanoFind training checkpoint")
        }
        // Before its first epoch ends a run's best weights are the untrained ones: nothing to use.
        guard state.bestEpoch > 0 else {
            throw DatasetError(file: url.path, reason: "has no finished epoch yet (its best weights are still the untrained ones); use it once an epoch has ended")
        }
        // The network is built from the checkpoint's settings: checked first (then the rest, below).
        if let p = state.settings.config.problem { throw DatasetError(file: url.path, reason: "describes an impossible network: \(p)") }
        let network = UNet(config: state.settings.config)
        for (name, t) in network.namedTensors {
            guard let e = entries["best/\(name)"], e.values.count == t.count else {
                throw DatasetError(file: url.path, reason: "tensor best/\(name) is missing or has the wrong size")
            }
            t.assign(from: e.values)
        }
        var metrics: [String: Double] = ["steps": Double(state.stepsDone), "best_epoch": Double(state.bestEpoch)]
        if let best = state.records.first(where: { $0.epoch == state.bestEpoch }) { metrics["val_loss"] = best.validationLoss }
        let metadata = ModelMetadata(config: state.settings.config, threshold: 0.5, trainingPixelSizeNm: state.trainingPixelSizeNm,
                                     preprocessing: state.settings.recipe,
                                     provenance: "best epoch (\(state.bestEpoch)) of the training checkpoint \(url.lastPathComponent) at step \(state.stepsDone)",
                                     trainingRecipe: state.settings.asFlags, metrics: metrics)
        if let problem = metadata.problem { throw DatasetError(file: url.path, reason: problem) }
        return Model(network: network, metadata: metadata)
    }
}

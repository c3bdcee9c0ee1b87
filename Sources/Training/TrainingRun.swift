import Foundation
import MicrographIO
import NanoNet
import Preprocessing
import Segmentation

/// `nanofind train` as a library call: data folders in, a model file (with `MODEL_train_log.csv`
/// and `MODEL_loss_curve.png` beside it, MODEL its name without the extension) out.
public struct TrainingRun {
    public var data: [URL]
    public var validationFolder: URL?
    public var settings: TrainingSettings
    public var output: URL
    public var resume = false
    /// The network to start from (`train --from`), of the settings' shape; nil: random weights.
    public var initial: UNet? = nil
    public var open: (URL) throws -> [Micrograph] = MicrographReader.open
    /// Gets a line (`file: what`) for what a user should know about the data before a run
    /// spends its time: files not used, masks that look inverted, images resampled to the
    /// training scale or without a pixel size, an earlier run's checkpoint started over.
    public var warn: (String) -> Void = { _ in }

    public init(data: [URL], validationFolder: URL? = nil, settings: TrainingSettings, output: URL) {
        self.data = data; self.validationFolder = validationFolder; self.settings = settings; self.output = output
    }

    /// Training images whose pixel size is within this factor of the median are used as they
    /// are; those further off are resampled to it.
    public static let scaleSpread = 1.5
    /// A training image whose pixel size is more than this factor from the median is refused:
    /// its calibration is more likely wrong (a unit mistaken) than right, and resampling it
    /// would make it absurdly large or small.
    public static let largestRescale = 8.0

    /// Beside the model: the checkpoint that `--resume` continues from.
    public var checkpointURL: URL { output.deletingLastPathComponent().appendingPathComponent(output.lastPathComponent + ".checkpoint") }
    /// Beside the model and named after it, so models trained into one folder keep their own.
    public var logURL: URL { beside("_train_log.csv") }
    public var curveURL: URL { beside("_loss_curve.png") }
    func beside(_ suffix: String) -> URL {
        output.deletingLastPathComponent().appendingPathComponent(output.deletingPathExtension().lastPathComponent + suffix)
    }

    /// Loads and splits the data (every problem reported before any training), trains, picks
    /// the threshold and writes the model.
    public func run(report: @escaping (TrainingEvent) -> Void) throws -> Model {
        if let p = settings.problem { throw DatasetError(file: "nanofind train", reason: p) }
        // What train writes beside the model, checked before an epoch is spent.
        for url in [checkpointURL, logURL, curveURL] {
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder), isFolder.boolValue {
                throw DatasetError(file: url.path, reason: "is a folder; train writes a file there")
            }
        }
        if resume && !FileManager.default.fileExists(atPath: checkpointURL.path) {
            throw DatasetError(file: checkpointURL.path, reason: "no checkpoint to resume from")
        }
        // Warnings wait until every check has passed: a refused run prints its one error line alone.
        var warnings: [String] = []
        let all = try LabelledDataset.load(data, open: open) { warnings.append($0) }
        var trainSet: [LabelledImage], validationSet: [LabelledImage]
        if let validationFolder {
            // Validating on training images would make early stopping and the best epoch mean nothing.
            let resolved = { (u: URL) in u.resolvingSymlinksInPath().standardizedFileURL.path }
            if data.contains(where: { resolved($0) == resolved(validationFolder) }) {
                throw DatasetError(file: validationFolder.path, reason: "is also a training folder; --validation names held-out images")
            }
            trainSet = all
            validationSet = try LabelledDataset.load([validationFolder], open: open) { warnings.append($0) }
        } else {
            // Split within each group (material), so both sides see every material that has two
            // images or more (a material with one image trains only).
            trainSet = []; validationSet = []
            for group in Set(all.map(\.group)).sorted() {
                let members = all.filter { $0.group == group }
                let (t, v) = splitTrainValidation(count: members.count, fraction: settings.validationFraction, seed: settings.seed)
                trainSet += t.map { members[$0] }; validationSet += v.map { members[$0] }
            }
        }
        guard !trainSet.isEmpty else { throw DatasetError(file: data.first?.path ?? "", reason: "no training images left after the split") }
        // Masks with nothing to learn from: a network trained on them finds no particle anywhere,
        // at "100 %" pixel accuracy. (A mask drawn on a transparent layer reads as all 0.)
        guard trainSet.contains(where: { $0.mask.foregroundCount > 0 }) else {
            let reason = validationSet.contains(where: { $0.mask.foregroundCount > 0 })
                ? "no training image's mask marks a particle (only validation images have any): add images with particles, or give the held-out ones with --validation"
                : "no mask marks any particle (every mask is all 0); a mask is 255 (or 1) where a particle is, in its grey values (not its transparency)"
            throw DatasetError(file: data.first?.path ?? "", reason: reason)
        }
        // One scale for the network: the training images' median pixel size, which the model
        // records and segment resamples every input to. Images within a factor `scaleSpread` of
        // it are used as they are (a spread the network learns across, as sim-v1's 0.73-1.28 of
        // its median, and about the zoom the robust augmentation draws); those further off
        // would show it their particles at scales segment never will, and are resampled to it,
        // unless so far off (over `largestRescale`) that the calibration must be wrong.
        let sizes = trainSet.compactMap(\.pixelSizeNm).sorted()
        let median = sizes.isEmpty ? nil : (sizes[(sizes.count - 1) / 2] + sizes[sizes.count / 2]) / 2
        let tooSmall = { (w: Int, h: Int) -> Bool in w < settings.tile / 4 || h < settings.tile / 4 }
        if let median {
            let everyImage = trainSet + validationSet
            let factor = { (image: LabelledImage) in image.pixelSizeNm.map { max($0 / median, median / $0) } ?? 1 }
            let off = everyImage.filter { factor($0) > TrainingRun.scaleSpread }
            for image in off {
                let p = image.pixelSizeNm ?? median
                if factor(image) > TrainingRun.largestRescale {
                    throw DatasetError(file: image.url.path, reason: String(format: "has a pixel size of %.4g nm, %.3gx the training images' median %.4g nm: check its calibration (or train such images apart)", p, p / median, median))
                }
                let (w, h) = image.sizeResampled(toPixelSizeNm: median)
                if tooSmall(w, h) {
                    throw DatasetError(file: image.url.path, reason: String(format: "is %d×%d pixels at %.4g nm, %d×%d at the training images' median %.4g nm, too small for --tile %d",
                                                                           image.image.width, image.image.height, p, w, h, median, settings.tile))
                }
            }
            if let first = off.first, let lo = everyImage.compactMap(\.pixelSizeNm).min(),
               let hi = everyImage.compactMap(\.pixelSizeNm).max() {
                warnings.append(String(format: "%@: %d of the %d images have pixel sizes more than %gx from the training images' median, %.4g nm (they span %.4g to %.4g nm): each is resampled to it, as segment resamples its inputs to the model's",
                                       first.url.path, off.count, everyImage.count, TrainingRun.scaleSpread, median, lo, hi))
                let resample = { (image: LabelledImage) in factor(image) > TrainingRun.scaleSpread ? image.resampled(toPixelSizeNm: median) : image }
                trainSet = trainSet.map(resample)
                validationSet = validationSet.map(resample)
            }
            let uncalibrated = everyImage.filter { $0.pixelSizeNm == nil }
            if let first = uncalibrated.first {
                warnings.append(String(format: "%@: %d of the %d images have no pixel size: taken to be at the others' median, %.4g nm", first.url.path,
                            uncalibrated.count, everyImage.count, median))
            }
        }
        for image in trainSet + validationSet where tooSmall(image.image.width, image.image.height) {
            throw DatasetError(file: image.url.path, reason: "is \(image.image.width)×\(image.image.height) pixels, too small for --tile \(settings.tile)")
        }
        // Crops larger than an image wrap it round itself, its opposite edges meeting in seams
        // the network then learns: said, with the tile that would fit.
        let smaller = trainSet.filter { $0.image.width < settings.tile || $0.image.height < settings.tile }
        if let smallest = smaller.min(by: { min($0.image.width, $0.image.height) < min($1.image.width, $1.image.height) }) {
            let multiple = settings.config.sizeMultiple
            let side = min(smallest.image.width, smallest.image.height), fits = side / multiple * multiple
            warnings.append("\(smallest.url.path): \(smaller.count) of the \(trainSet.count) training images are smaller than --tile \(settings.tile) (this one \(smallest.image.width)×\(smallest.image.height)): each crop of them wraps the image round itself, seams and all\(fits >= multiple ? "; --tile \(fits) fits them" : "")")
        }
        let recipe = settings.recipe
        let trainer = Trainer(settings: settings, train: trainSet.map { PreparedImage($0, recipe: recipe) },
                              validation: validationSet.map { PreparedImage($0, recipe: recipe) }, checkpointURL: checkpointURL,
                              initial: initial)
        trainer.report = { event in
            if case .epochEnd = event { try? self.writeLog(trainer.records) }
            report(event)
        }
        // Every check of the data and the checkpoint before the first line of the run.
        if resume {
            try trainer.resume()
        } else if FileManager.default.fileExists(atPath: checkpointURL.path) {
            warnings.append("\(checkpointURL.path): an earlier run's checkpoint; this run starts afresh and replaces it (--resume continues it instead)")
        }
        warnings.forEach(warn)
        report(.message("\(trainSet.count) training and \(validationSet.count) validation images; "
                        + "groups: \(Dictionary(grouping: trainSet, by: \.group).mapValues(\.count).sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))"))
        if resume { report(.message("resumed at step \(trainer.stepsDone)")) }
        trainer.trainingPixelSizeNm = median  // in every checkpoint, so a model read from one has it
        try trainer.run()
        // Every validation loss NaN or infinite (training diverged): the best weights would be
        // the untrained ones, written as if trained.
        guard trainer.bestEpoch > 0 else {
            throw DatasetError(file: output.path, reason: "is not written: no epoch improved on the untrained network (every validation loss was NaN or infinite; the training diverged — try a lower --lr)")
        }
        let (threshold, trainAccuracy) = trainer.chooseThreshold()
        report(.message(String(format: "threshold %.4f (pixel accuracy %.2f %% on the training images)", threshold, 100 * trainAccuracy)))
        var metrics: [String: Double] = ["train_pixel_accuracy": trainAccuracy, "best_epoch": Double(trainer.bestEpoch),
                                         "steps": Double(trainer.stepsDone)]
        if let best = trainer.records.first(where: { $0.epoch == trainer.bestEpoch }) {
            if !validationSet.isEmpty { metrics["val_loss"] = best.validationLoss; metrics["val_dice_at_0.5"] = best.validationDice }
            metrics["samples_per_s"] = best.samplesPerSecond
            // The epoch of least validation loss can be one that finds (almost) no particle: on
            // sparse masks "all carbon" scores a low loss early on (an audit's short runs kept
            // epochs of validation dice 0.000). Said, so the model is not taken for a finished one.
            if validationSet.contains(where: { $0.mask.foregroundCount > 0 }), best.validationDice < 0.05 {
                warn(String(format: "%@: the epoch kept (%d, the least validation loss) finds almost no particle in the validation images (dice %.3f at 0.5): the network has not learned them yet; train longer (--epochs, --steps-per-epoch) or at a higher --lr",
                            output.path, trainer.bestEpoch, best.validationDice))
            }
        }
        let described = Dictionary(grouping: trainSet, by: \.group).map { "\($0.key): \($0.value.count) images" }.sorted()
        let metadata = ModelMetadata(config: settings.config, threshold: threshold, trainingPixelSizeNm: median,
                                     preprocessing: recipe,
                                     provenance: "nanofind train on \(data.map(\.lastPathComponent).joined(separator: ", "))",
                                     trainingData: data.map(\.path) + described
                                        + (validationSet.isEmpty ? [] : ["validation: \(validationSet.count) images"]),
                                     trainingRecipe: settings.asFlags, metrics: metrics)
        let model = Model(network: trainer.network, metadata: metadata)
        // The log first: a failure writes no model (and keeps the checkpoint to resume from),
        // never a model beside an error.
        try writeLog(trainer.records)
        try SafeTensorsModel.save(model, to: output)
        try? FileManager.default.removeItem(at: checkpointURL)
        return model
    }

    func writeLog(_ records: [EpochRecord]) throws {
        let text = ([EpochRecord.csvHeader] + records.map(\.csvLine)).joined(separator: "\n") + "\n"
        try writeAtomically(Array(text.utf8), to: logURL)
        let chart = lineChart(series: [("train loss", Canvas.blue, records.map { (Double($0.step), $0.trainLoss) }),
                                       ("validation loss", Canvas.orange, records.map { (Double($0.step), $0.validationLoss) })],
                              title: "loss", xLabel: "step")
        try chart.write(to: curveURL)
    }
}

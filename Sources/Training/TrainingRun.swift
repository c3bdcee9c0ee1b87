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
    public var open: (URL) throws -> [Micrograph] = MicrographReader.open

    public init(data: [URL], validationFolder: URL? = nil, settings: TrainingSettings, output: URL) {
        self.data = data; self.validationFolder = validationFolder; self.settings = settings; self.output = output
    }

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
        let all = try LabelledDataset.load(data, open: open)
        var trainSet: [LabelledImage], validationSet: [LabelledImage]
        if let validationFolder {
            // Validating on training images would make early stopping and the best epoch mean nothing.
            let resolved = { (u: URL) in u.resolvingSymlinksInPath().standardizedFileURL.path }
            if data.contains(where: { resolved($0) == resolved(validationFolder) }) {
                throw DatasetError(file: validationFolder.path, reason: "is also a training folder; --validation names held-out images")
            }
            trainSet = all
            validationSet = try LabelledDataset.load([validationFolder], open: open)
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
        for image in trainSet + validationSet where image.image.width < settings.tile / 4 || image.image.height < settings.tile / 4 {
            throw DatasetError(file: image.url.path, reason: "is \(image.image.width)×\(image.image.height) pixels, too small for --tile \(settings.tile)")
        }
        report(.message("\(trainSet.count) training and \(validationSet.count) validation images; "
                        + "groups: \(Dictionary(grouping: trainSet, by: \.group).mapValues(\.count).sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))"))
        let recipe = settings.recipe
        let trainer = Trainer(settings: settings, train: trainSet.map { PreparedImage($0, recipe: recipe) },
                              validation: validationSet.map { PreparedImage($0, recipe: recipe) }, checkpointURL: checkpointURL)
        trainer.report = { event in
            if case .epochEnd = event { try? self.writeLog(trainer.records) }
            report(event)
        }
        let sizes = trainSet.compactMap(\.pixelSizeNm).sorted()
        let median = sizes.isEmpty ? nil : (sizes[(sizes.count - 1) / 2] + sizes[sizes.count / 2]) / 2
        if resume {
            try trainer.resume()
            report(.message("resumed at step \(trainer.stepsDone)"))
        }
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

import ArgumentParser
import Foundation
import MicrographIO
import NanoNet
import Segmentation
import Training

extension Loss: ExpressibleByArgument {
    /// `cce`, `dice`, and `bce-dice` (or `bce+dice`).
    public init?(argument: String) {
        self.init(rawValue: argument == "bce-dice" ? "bce+dice" : argument)
    }
    public static var allValueStrings: [String] { ["cce", "dice", "bce-dice"] }
}
extension AugmentationPreset: ExpressibleByArgument {}
extension CropPlacement: ExpressibleByArgument {}
extension TrainingSettings.LearningRateSchedule: ExpressibleByArgument {}

/// Input normalisation for training, as recorded in the model.
enum NormaliseChoice: String, ExpressibleByArgument, CaseIterable {
    case paper = "median3+min-max", robust = "median3+percentile", percentile, minMax = "min-max", none

    var recipe: InputRecipe {
        switch self {
        case .paper: return .pyNanoFind
        case .robust: return .robust
        case .percentile: return InputRecipe(medianFilter: false, scaling: .percentile)
        case .minMax: return InputRecipe(medianFilter: false, scaling: .minMax)
        case .none: return .none
        }
    }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a U-Net on folders of labelled micrographs.",
        discussion: """
            DATA are folders of micrographs (any format NanoFind reads) with NAME_mask.png or \
            NAME_mask.tif (as ImageJ saves it) beside each image: grey, 0 background and 255 (or 1) \
            particle. A stem stored in several formats counts once; files not used (a mask without \
            an image, a JPEG) and masks that are mostly particle (inverted?) are named in warnings. \
            Images whose pixel size is more than 1.5× from the training images' median are resampled \
            to it (the scale the model records, to which segment resamples its inputs). Without \
            --validation, 25 % of each material (from a manifest.jsonl beside or above the folder, \
            else per folder) is held out for validation. The defaults follow the paper's recipe: \
            3×3 median + min-max, rotation 0–360° with wrap + flips, Adam 1e-4, cross-entropy, \
            batch 20 of 512² tiles, 1000 steps per epoch, at most 10 epochs, early stopping on \
            validation loss (patience 2, min delta 0.001, as Keras' EarlyStopping); unlike the \
            published files (the last epoch's), the best epoch is kept, and crops are centred \
            anywhere (--crops inside turns a crop as large as the image about its centre, as the \
            paper's generator does). Then the threshold that maximises pixel accuracy on the \
            training images.

            Writes MODEL (with everything needed to use it: architecture, threshold, training pixel \
            size, preprocessing, data, recipe, metrics), and beside it MODEL_train_log.csv (each \
            epoch's losses) and MODEL_loss_curve.png, MODEL its name without the extension; MODEL.checkpoint while training, which --resume continues from (after any \
            interruption); the same seed and flags give the same model, bit for bit.

            Examples (times on 2 cores of an AMD EPYC Zen 5): the paper's recipe, about 8.5 minutes an epoch:
                      nanofind train ../shared/data/sim-v1/train -o model.safetensors --epochs 3
                      the default model's recipe (8 minutes; see Models/README.md): make model
                      the default model fine-tuned on your own labelled micrographs:
                      nanofind train mine -o mine.safetensors --from default --augment robust --tile 256 --batch-size 8 --epochs 3
            """)

    @Argument(help: "Folders of micrographs with NAME_mask.png (or .tif) beside each.") var data: [String]
    @Option(name: [.short, .customLong("output")], help: "The model file to write (.safetensors).") var output: String
    @Option(help: "A folder of validation images instead of a split of DATA.") var validation: String?
    @Option(parsing: .unconditional, help: "Most epochs.") var epochs = 10
    @Option(parsing: .unconditional, help: "Steps per epoch.") var stepsPerEpoch = 1000
    @Option(parsing: .unconditional, help: "Crops per step.") var batchSize = 20
    @Option(parsing: .unconditional, help: "Crop side in pixels (a multiple of 2^depth).") var tile = 512
    @Option(parsing: .unconditional, help: "Adam learning rate.") var lr: Float = 1e-4
    @Option(help: "Learning-rate schedule: constant or cosine (to 1 % at the end).") var lrSchedule: TrainingSettings.LearningRateSchedule = .constant
    @Option(help: "Loss: cce, dice or bce-dice.") var loss: Loss = .crossEntropy
    @Option(help: "Encoder widths, comma-separated (centre = the last; default 4,8,16,32, or the --from model's).") var widths: String?
    @Option(help: "Augmentation: paper (rotation + flips), robust (+ scale, uneven light, contrast, gamma, blur, noise) or none.")
    var augment: AugmentationPreset = .paper
    @Option(help: "Where crops are centred: wrap (anywhere, wrapping at the edges, as Keras' wrap fill) or inside (where the turned crop lies inside the image: no seams; a crop as large as the image is turned about its centre, as the paper's generator does).")
    var crops: CropPlacement = .wrap
    @Option(help: "Input normalisation: \(NormaliseChoice.allCases.map(\.rawValue).joined(separator: ", ")).")
    var normalise: NormaliseChoice?
    @Option(help: "Start from this model's weights instead of random ones (fine-tuning, e.g. the default model on your own micrographs): a NanoFind .safetensors model, or 'default'. Its widths and input preparation are kept (--widths and --normalise, if given, must be its).")
    var from: String?
    @Option(parsing: .unconditional, help: "Early stopping: epochs without improvement of the validation loss.") var patience = 2
    @Option(parsing: .unconditional, help: "Random seed (split, crops, initialisation, dropout).") var seed: UInt64 = 0
    @Flag(help: "Continue from MODEL.checkpoint.") var resume = false
    @OptionGroup var threads: ThreadOptions

    /// The settings; with `initial` (the --from model) its widths and input preparation where
    /// the flags give none.
    func settings(initial: Model? = nil) throws -> TrainingSettings {
        var s = TrainingSettings()
        s.epochs = epochs; s.stepsPerEpoch = stepsPerEpoch; s.batchSize = batchSize; s.tile = tile
        s.learningRate = lr; s.schedule = lrSchedule; s.loss = loss; s.augment = augment; s.crops = crops
        s.recipe = normalise?.recipe ?? initial?.metadata.preprocessing ?? NormaliseChoice.paper.recipe; s.seed = seed; s.patience = patience
        let widths = self.widths ?? initial.map { $0.network.config.widths.map(String.init).joined(separator: ",") } ?? "4,8,16,32"
        let parts = widths.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else {
            throw ValidationError("--widths must be comma-separated whole numbers, e.g. 4,8,16,32")
        }
        s.widths = parts.compactMap { $0 }
        if let p = s.problem { throw ValidationError(p) }
        return s
    }

    func validate() throws {
        _ = try settings()
        // A name that says another format would be a safetensors file under a misleading name.
        let ext = URL(fileURLWithPath: output).pathExtension.lowercased()
        if ["h5", "hdf5", "keras", "pb", "onnx", "pt", "pth", "ckpt", "tflite"].contains(ext) {
            let stem = URL(fileURLWithPath: output).deletingPathExtension().lastPathComponent
            throw ValidationError("-o \(output): train writes NanoFind models (.safetensors), not .\(ext) files; name it e.g. \(stem).safetensors")
        }
    }

    func run() throws {
        threads.apply()
        let outURL = URL(fileURLWithPath: output)
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: outURL.path, isDirectory: &isDir), isDir.boolValue {
            throw exitWithInputError(DatasetError(file: output, reason: "is a folder; -o names the model file to write"))
        }
        // The model's folder is made if missing, as segment and evaluate make their -o folders.
        let folder = outURL.deletingLastPathComponent()
        if !FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDir) {
            do { try CreatedFolders.create(folder) } catch {
                throw exitWithInputError(DatasetError(file: output, reason: "its folder cannot be created"))
            }
            isDir = true
        }
        guard isDir.boolValue else {
            throw exitWithInputError(DatasetError(file: output, reason: "its folder is a file"))
        }
        guard FileManager.default.isWritableFile(atPath: folder.path) else {
            throw exitWithInputError(DatasetError(file: output, reason: "its folder cannot be written"))
        }
        removeStaleTemporaries(in: folder)  // a killed run's `.MODEL.checkpoint.partial-PID`, say
        // The model, its log and its loss curve go beside -o: never into the data, where
        // they would replace an image or a mask (or become one).
        // The folder resolved (it exists; a file that does not yet would not be), then the name.
        let resolved = folder.resolvingSymlinksInPath().standardizedFileURL.appendingPathComponent(outURL.lastPathComponent).path
        for source in data + (validation.map { [$0] } ?? []) {
            let d = URL(fileURLWithPath: source).resolvingSymlinksInPath().standardizedFileURL.path
            if resolved == d || resolved.hasPrefix(d.hasSuffix("/") ? d : d + "/") {
                throw exitWithInputError(DatasetError(file: output, reason: "is inside the training data \(source); write the model elsewhere"))
            }
        }
        // Only a NanoFind model is replaced (not a Keras .h5 of published weights, nor anything else).
        if FileManager.default.fileExists(atPath: outURL.path), !resume, (try? SafeTensorsModel.load(outURL)) == nil {
            throw exitWithInputError(DatasetError(file: output, reason: "exists and is not a NanoFind model; train will not replace it"))
        }
        // The model to start from: its shape and preparation are the run's.
        var initial: Model? = nil
        if let from {
            do {
                let model = from == "default" ? try DefaultModel.load() : try IsolatedReader.loadModel(URL(fileURLWithPath: from))
                let file = from == "default" ? DefaultModel.url?.path ?? "the default model" : from
                let own = try settings(initial: model)
                guard model.network.config == own.config else {
                    throw ModelFileError(file: file, reason: "is a network of widths \(model.network.config.widths.map(String.init).joined(separator: ",")) (centre \(model.network.config.centreWidth), \(model.network.config.classes) classes), not the \(own.widths.map(String.init).joined(separator: ",")) one --widths asks for; leave --widths out to train its own")
                }
                if own.recipe != model.metadata.preprocessing {
                    throw ModelFileError(file: file, reason: "was trained on inputs prepared as \(model.metadata.preprocessing), not as --normalise \(own.recipe); leave --normalise out to keep its")
                }
                initial = model
            } catch {
                throw exitWithInputError(error)
            }
        }
        var settings = try settings(initial: initial)
        settings.initialModel = from
        var run = TrainingRun(data: data.map { URL(fileURLWithPath: $0) }, validationFolder: validation.map { URL(fileURLWithPath: $0) },
                              settings: settings, output: outURL)
        run.initial = initial?.network
        run.resume = resume
        run.open = IsolatedReader.open
        run.warn = { writeStandardError("warning: \(oneLine($0))\n") }
        let bar = ProgressBar()
        let started = Date()
        do {
            _ = try run.run { event in
                switch event {
                case let .step(epoch, step, of, loss, dice, rate):
                    bar.update(String(format: "epoch %d/%d", epoch, self.epochs), done: step, of: of,
                               detail: String(format: "loss %.4f  dice %.3f  %.1f samples/s", loss, dice, rate),
                               secondsLeft: Double(of - step) * Double(self.batchSize) / max(rate, 1e-9))
                case let .epochEnd(r, improved):
                    let validation = r.validationLoss.isNaN ? "no validation images"
                        : String(format: "validation loss %.4f dice %.3f", r.validationLoss, r.validationDice)
                    bar.finish(String(format: "epoch %d: loss %.4f dice %.3f | %@%@ | %.1f samples/s, %.0f s training, %.0f s in all",
                                      r.epoch, r.trainLoss, r.trainDice, validation,
                                      improved ? " (best)" : "", r.samplesPerSecond, r.seconds, r.wallSeconds ?? r.seconds))
                case let .earlyStop(epoch):
                    bar.finish("early stopping after epoch \(epoch): the validation loss stopped improving")
                case let .message(text):
                    bar.finish(text)
                }
            }
        } catch {
            throw exitWithInputError(error)
        }
        bar.finish(String(format: "wrote %@ (and %@, %@) in %.0f s", output, run.logURL.lastPathComponent, run.curveURL.lastPathComponent,
                          Date().timeIntervalSince(started)))
    }
}

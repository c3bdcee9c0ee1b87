import Foundation
import MicrographIO
import NanoNet
import NanoTensor
import ParticleAnalysis
import Preprocessing

/// Settings of a segmentation run that are not the model's own.
public struct SegmentationOptions: Sendable {
    /// Particle where p > threshold (nil: the model's).
    public var threshold: Float?
    /// nm per pixel to use instead of the file's calibration (for uncalibrated exports).
    public var pixelSizeOverride: Double?
    /// nm per pixel for images without a calibration, the others keeping their own
    /// (`--default-pixel-size`: a folder of microscope files and their uncalibrated exports).
    public var fallbackPixelSize: Double?
    /// Input preparation (nil: what the model records).
    public var recipe: InputRecipe?
    /// Memory one image may take: its full-size arrays (`Segmenter.memoryPlan`) plus the
    /// network's tiles, whose size is chosen from what remains.
    public var memoryBytes: Int
    /// Resample to the model's pixel size when both are known (on by default).
    public var resampleToModelScale: Bool
    /// Average the probabilities over the 8 flips and 90° rotations (8× the time).
    public var testTimeAugmentation = false
    /// Divide out the quadratic surface fitted to the image (an illumination or thickness
    /// gradient, a bright centre) before the network sees it (`FloatImage.flattenedIllumination`),
    /// unless the recipe is `none` (the network then sees the image as it is). On by default: on
    /// sim-v1's test set lit with a ramp of ±5 % (±10 %), pooled dice 0.485 (0.270) without and
    /// 0.963 (0.963) with it; lit brightest near the centre, ±2 % (±5 %, ±10 %) towards the
    /// corners, 0.674 (0.365, 0.214) without, 0.716 (0.358, 0.208) with a plane divided out and
    /// 0.963 with the quadratic; evenly lit, 0.9629 and 0.9628.
    public var flattenIllumination = SegmentationOptions.flattenByDefault
    public static let flattenByDefault = true

    public init(threshold: Float? = nil, pixelSizeOverride: Double? = nil, recipe: InputRecipe? = nil,
                memoryBytes: Int = SegmentationOptions.defaultMemory, resampleToModelScale: Bool = true) {
        self.threshold = threshold; self.pixelSizeOverride = pixelSizeOverride; self.recipe = recipe
        self.memoryBytes = memoryBytes; self.resampleToModelScale = resampleToModelScale
    }

    /// A quarter of the machine's memory.
    public static var defaultMemory: Int { Int(ProcessInfo.processInfo.physicalMemory / 4) }
}

/// Where an image's pixel size came from.
public enum PixelSizeSource: String, Sendable, Codable {
    case file
    case option = "--pixel-size"
    case fallback = "--default-pixel-size"
    case none
}

/// One segmented image, on its own pixel grid.
public struct SegmentedImage: Sendable {
    /// Particle probability (softmax channel 1) of every pixel.
    public var probability: FloatImage
    /// 1 where probability > threshold.
    public var mask: BinaryMask
    public var threshold: Float
    /// nm per pixel (x), nil when unknown.
    public var pixelSizeNm: Double?
    public var pixelSizeSource: PixelSizeSource
    /// Network pixels per image pixel (1 when not resampled).
    public var scale: Double
    /// Seconds per step: preprocess, resample, network, …
    public var timings: [(String, Double)]
    /// What the user should know about this image's result (a blank image, say), one line each.
    public var notes: [String] = []
    /// The pixels that were NaN or ±∞, nil when every pixel was finite.
    public var nonFinite: BinaryMask?
    /// The flat fill at the image's edges (`FloatImage.edgePadding`: an aligned sum's, say),
    /// nil when there is none.
    public var padding: BinaryMask?
    /// The median of the other pixels (`FloatImage.fillLikeOthers`, which filled `outside` for
    /// the network with pixels drawn from them): the overlay shows the padding and NaN pixels
    /// flat at this value.
    public var outsideValue: Float = 0

    /// The rows below the specimen (an SEM's information bar), nil when there are none.
    public var bar: BinaryMask?

    /// The pixels that show no specimen (NaN or ±∞, padding, an information bar), nil when
    /// there are none (a new mask each time).
    public var outside: BinaryMask? { BinaryMask.union(BinaryMask.union(nonFinite, padding), bar) }
    /// How many pixels show no specimen (`outside`'s), counted by `Segmenter.segment` as it
    /// clears them.
    public internal(set) var outsidePixels = 0

    /// The pixels beyond which a particle is cut, besides the image's edges: the padding, and
    /// the NaN and ±∞ pixels that reach the edges or lie beside a particle's edge (a block of
    /// them within the specimen hides where the particle ends; a dead pixel wholly inside a
    /// particle, or in the carbon away from any, cuts nothing).
    public var cut: BinaryMask? { BinaryMask.union(nonFinite?.componentsNotEnclosed(by: mask), padding) }

    /// A result made elsewhere (a map from another tool), to write with `ImageOutputs`.
    public init(probability: FloatImage, mask: BinaryMask, threshold: Float, pixelSizeNm: Double?,
                pixelSizeSource: PixelSizeSource, scale: Double = 1, timings: [(String, Double)] = []) {
        self.probability = probability; self.mask = mask; self.threshold = threshold; self.pixelSizeNm = pixelSizeNm
        self.pixelSizeSource = pixelSizeSource; self.scale = scale; self.timings = timings
    }
}

/// The segmentation pipeline of one model: resample to the model's pixel size, prepare the input
/// as the model records, run the network in exact tiles, map the probabilities back, threshold.
public final class Segmenter: @unchecked Sendable {
    public let model: Model
    public let options: SegmentationOptions
    public let predictor: TiledPredictor

    public convenience init(model: Model, options: SegmentationOptions = SegmentationOptions()) {
        self.init(model: model, options: options, engine: UNetInference(model.network))
    }

    private init(model: Model, options: SegmentationOptions, engine: UNetInference) {
        self.model = model
        self.options = options
        predictor = TiledPredictor(engine: engine, tileSize: ExactTiling.tileSize(forMemory: options.memoryBytes, plan: engine.plan))
    }

    /// The same model (and packed weights) with other options, e.g. a share of the memory.
    public func with(options: SegmentationOptions) -> Segmenter {
        Segmenter(model: model, options: options, engine: predictor.engine)
    }

    public var threshold: Float { options.threshold ?? model.metadata.threshold }
    public var recipe: InputRecipe { options.recipe ?? model.metadata.preprocessing }
    /// Whether an image's fitted illumination is divided out first (`SegmentationOptions.flattenIllumination`).
    public var flattens: Bool { options.flattenIllumination && recipe != .none }

    /// The pixel size to use for a micrograph and where it came from.
    /// Pixels that are not square are an error unless `--pixel-size` overrides (`squarePixelSizeNm`).
    public func pixelSize(of micrograph: Micrograph, file: String? = nil) throws -> (Double?, PixelSizeSource) {
        if let p = options.pixelSizeOverride { return (p, .option) }
        if let p = try micrograph.squarePixelSizeNm(file: file) { return (p, .file) }
        if let p = options.fallbackPixelSize { return (p, .fallback) }
        return (nil, .none)
    }

    /// Why a `width` × `height` image of `pixelSizeNm` cannot be segmented, or nil: both sides
    /// must be at least 64 pixels, as it is and at the model's scale (a 64-px image at a tenth of
    /// the model's pixel size would reach the network as 6 px). `segment` and `evaluate` both ask.
    public func sizeProblem(width: Int, height: Int, pixelSizeNm: Double?) -> String? {
        if width < 64 || height < 64 { return "image is \(width)×\(height) pixels; both sides must be at least 64" }
        let scale = self.scale(for: pixelSizeNm)
        let sides = (Double(width) * scale, Double(height) * scale)
        guard sides.0.isFinite, sides.1.isFinite, sides.0 < 1e7, sides.1 < 1e7 else {
            return String(format: "a pixel size of %.4g nm would make this image %.3g pixels wide at the model's scale (check the calibration, or give --pixel-size)",
                          pixelSizeNm ?? 0, sides.0)
        }
        let (netWidth, netHeight) = networkSize(width: width, height: height, pixelSizeNm: pixelSizeNm)
        if netWidth < 64 || netHeight < 64 {
            return String(format: "image is %d×%d pixels of %.4g nm, %d×%d at the model's %.4g nm; both sides must be at least 64 there (check the calibration, or give --pixel-size)",
                          width, height, pixelSizeNm ?? 0, netWidth, netHeight, model.metadata.trainingPixelSizeNm ?? 0)
        }
        return nil
    }

    /// An image's size at the model's scale, as the network sees it.
    public func networkSize(width: Int, height: Int, pixelSizeNm: Double?) -> (width: Int, height: Int) {
        let scale = self.scale(for: pixelSizeNm)
        return (max(1, Int((Double(width) * scale).rounded())), max(1, Int((Double(height) * scale).rounded())))
    }

    /// Network pixels per image pixel for an image of `pixelSizeNm` (1 when either pixel size is
    /// unknown, resampling is off, or they differ by 2 % or less).
    public func scale(for pixelSizeNm: Double?) -> Double {
        guard options.resampleToModelScale, let p = pixelSizeNm, let m = model.metadata.trainingPixelSizeNm, m > 0,
              abs(p / m - 1) > 0.02 else { return 1 }
        return p / m
    }

    /// Bytes per image pixel of the full-size arrays held while the outputs are measured and
    /// written (the float image, the probability map, the mask, the labels, the overlay, the
    /// writers' buffers), when memory peaks, besides the file's own pixel data. Measured: the
    /// peak resident memory of `nanofind segment` on int16 MRCs of 8192² and 16384² pixels grew
    /// by 18.6 bytes per pixel, 2 of them the int16 data (AMD EPYC fam 25 mod 17, 2048² tiles,
    /// with and without resampling to the model's scale). An image with padding or NaN pixels
    /// holds more while its outputs are written (their masks and the one of what cuts a
    /// particle), not counted here, since the plan is made before the pixels are looked at.
    /// Measured (Intel Xeon fam 6 mod 207): an 8192² int16 MRC at 0.05 nm (resampled) with 35 %
    /// flat L-shaped padding peaked at 1532 MB, the same image with its padding filled with
    /// specimen at 1287 MB (3.7 bytes a pixel more), both at every `--memory` from 1.75 GB (the
    /// least the plan accepts for it) to 2 GB: still within the plan.
    public static let outputBytesPerPixel = 17
    /// While the network runs: per image pixel the float copy, and per network pixel the
    /// resampled image, its prepared copy and the probability map (at the image's own scale
    /// also the mask, made with the map: a byte more, 4 + 12 + 1 still within the output
    /// stage's 17). Exceeds the output stage only when the image is resampled up (pixels
    /// coarser than the model's).
    public static let networkBytesPerImagePixel = 4, networkBytesPerNetworkPixel = 12
    /// What `--tta` adds per network pixel (counted, not measured: five float maps at most).
    public static let augmentationBytesPerNetworkPixel = 20
    /// The process itself (code, libraries, model, thread stacks).
    public static let baseBytes = 150 << 20

    /// How an image of width × height at `pixelSizeNm` fits `options.memoryBytes`: the bytes of
    /// its full-size arrays and the tile side left for the network, or the least memory it needs
    /// when it does not fit (its full-size arrays and the smallest exact tile). `fileBytes`: the
    /// pixel data of the whole file it came from, held while any of its frames is segmented.
    /// Where the rest of the memory holds the whole (padded) image's pass, the tile is the
    /// whole image: no margins computed twice, and a 4096² pass costs what four 2048² ones do,
    /// while four 2144² tiles cost 1.15-1.3 times that (`bench` with its tiling rows, Intel Xeon
    /// fam 6 mod 207); else square tiles as large as the memory allows, up to
    /// `ExactTiling.largestKeptSide` between margins.
    public func memoryPlan(width: Int, height: Int, pixelSizeNm: Double?, fileBytes: Int = 0) -> Result<(fullSize: Int, tileSize: Int), MemoryShortfall> {
        let fullSize = fullSizeBytes(width: width, height: height, pixelSizeNm: pixelSizeNm, fileBytes: fileBytes)
        let plan = predictor.engine.plan
        let smallest = 2 * plan.tileMargin + plan.alignment
        let perPixel = ExactTiling.bytesPerPixel(plan)
        let smallestTile = Double(smallest * smallest * perPixel)
        let need = fullSize + smallestTile + Double(Self.baseBytes)
        guard need <= Double(options.memoryBytes) else { return .failure(MemoryShortfall(neededBytes: need)) }
        let rest = Int(Double(options.memoryBytes) - fullSize) - Self.baseBytes
        let net = networkSize(width: width, height: height, pixelSizeNm: pixelSizeNm)
        let paddedWidth = ExactTiling.padded(net.width, plan: plan), paddedHeight = ExactTiling.padded(net.height, plan: plan)
        if Double(paddedWidth) * Double(paddedHeight) * Double(perPixel) <= Double(rest) {
            return .success((Int(fullSize), max(paddedWidth, paddedHeight, smallest)))
        }
        return .success((Int(fullSize), min(predictor.tileSize, ExactTiling.tileSize(forMemory: rest, plan: plan))))
    }

    /// The full-size arrays of an image (see `memoryPlan`).
    package func fullSizeBytes(width: Int, height: Int, pixelSizeNm: Double?, fileBytes: Int) -> Double {
        let scale = self.scale(for: pixelSizeNm)
        let pixels = Double(width) * Double(height)
        // With test-time augmentation the network stage also holds the running sum, a turned copy
        // of the input (two while a turn is composed), the tile result and its inverse.
        let perNetworkPixel = Self.networkBytesPerNetworkPixel + (options.testTimeAugmentation ? Self.augmentationBytesPerNetworkPixel : 0)
        return Double(fileBytes) + Double(TouchingParticles.scratchBytes(pixels: width * height))
            + max(pixels * Double(Self.outputBytesPerPixel),
                  pixels * (Double(Self.networkBytesPerImagePixel) + scale * scale * Double(perNetworkPixel)))
    }

    /// What one image of `side`² int16 pixels at the model's scale needs to be segmented in tiles
    /// of the preferred size (`ExactTiling.preferredKeptSide` between margins): 1.1 GB for
    /// 4096², the common camera size (the tile's activations are 0.32 GB of it, as
    /// `ExactTiling.bytesPerPixel` reckons them; the whole image's pass would take 1.2 GB in
    /// their place).
    public func bytesForPreferredTiles(side: Int) -> Int {
        let plan = predictor.engine.plan
        let tile = ExactTiling.preferredTileSize(plan)
        return Int(fullSizeBytes(width: side, height: side, pixelSizeNm: nil, fileBytes: 2 * side * side))
            + tile * tile * ExactTiling.bytesPerPixel(plan) + Self.baseBytes
    }

    /// An image that needs more memory than `--memory` gives.
    public struct MemoryShortfall: Error {
        public let neededBytes: Double
    }

    /// Why an image of width × height at `pixelSizeNm` is refused for `shortfall`, in the words
    /// of a one-line error: its size, at the model's scale too when resampling makes it larger or
    /// smaller (a coarse calibration can make a small image huge, and raising the memory is then
    /// the wrong remedy), the memory it needs and the budget (`budget` names where that came from).
    public func refusal(width: Int, height: Int, pixelSizeNm: Double?, _ shortfall: MemoryShortfall, budget: String) -> String {
        let scale = self.scale(for: pixelSizeNm), net = networkSize(width: width, height: height, pixelSizeNm: pixelSizeNm)
        let gb = { (b: Double) in String(format: "%.3g", b / 1e9) }
        let resampled = scale == 1 ? "" : String(format: " of %.4g nm, %d×%d at the model's %.4g nm (check the calibration, or give --pixel-size)",
                                                 pixelSizeNm ?? 0, net.width, net.height,
                                                 model.metadata.trainingPixelSizeNm ?? 0)
        return "image is \(width)×\(height) pixels\(resampled); segmenting it needs at least \(gb(shortfall.neededBytes)) GB of memory and \(budget) gives \(gb(Double(options.memoryBytes))) GB"
    }

    /// Segments one frame of a micrograph.
    public func segment(_ micrograph: Micrograph, frame: Int = 0, pool: ThreadPool = .shared) throws -> SegmentedImage {
        let image = try FloatImage(micrograph, frame: frame)
        let (size, source) = try pixelSize(of: micrograph)
        return segment(image, pixelSizeNm: size, source: source, pool: pool)
    }

    /// Segments an image of raw intensities whose pixel size is `pixelSizeNm` (nil: unknown).
    /// `tileSize`: the tile side (default: what `memoryPlan` leaves for this image, or the one
    /// the options' whole memory gives when the image does not fit it). Pixels that show no
    /// specimen are filled with pixels drawn from the others (`FloatImage.fillLikeOthers`) and
    /// are never particle, each kind with a note: the flat fill at the edges of an aligned or
    /// rotated sum (`SegmentedImage.padding`, `FloatImage.edgePadding`), which the network,
    /// trained on texture, may read as anything and which would squeeze the contrast of the
    /// rest, and NaN and ±∞ pixels (`SegmentedImage.nonFinite`).
    /// `specimenRows`: the rows that show specimen, when the image's last rows do not (an SEM's
    /// information bar): those below are filled like the rest and never particle (`bar`).
    public func segment(_ image: FloatImage, pixelSizeNm: Double?, source: PixelSizeSource = .file, tileSize: Int? = nil,
                        specimenRows: Int? = nil, pool: ThreadPool = .shared) -> SegmentedImage {
        var image = image
        let start = DispatchTime.now().uptimeNanoseconds
        let w = image.width, h = image.height
        let rows = specimenRows.flatMap { $0 >= 1 && $0 < h ? $0 : nil } ?? h
        // The rows that show specimen (the bar is no edge of it); its padding in the whole
        // image's frame, and the bar's rows.
        let scan = rows < h ? FloatImage(width: w, height: rows, pixels: Array(image.pixels[..<(rows * w)])) : image
        var padding = scan.edgePadding(parallel: pool.parallel).map {
            rows < h ? BinaryMask(width: w, height: h, values: $0.values + [UInt8](repeating: 0, count: (h - rows) * w)) : $0
        }
        let bar = rows < h ? BinaryMask(width: w, height: h, values: [UInt8](repeating: 0, count: rows * w) + [UInt8](repeating: 1, count: (h - rows) * w)) : nil
        if let p = padding, p.foregroundCount == rows * w {
            // All padding: one value is the one-value image `segmentFinite` notes (or above a bar,
            // noted here); more are blocks of values with nothing between them to segment.
            let (lo, hi) = scan.extremes(parallel: pool.parallel)
            if rows < h {
                return blank(width: w, height: h, pixelSizeNm: pixelSizeNm, source: source,
                             note: lo == hi ? String(format: "every pixel above the information bar is %g: nothing to segment, no particles", lo)
                                            : "every pixel above the information bar lies in flat blocks of one value (padding): nothing to segment, no particles")
            }
            guard lo == hi else {
                return blank(width: w, height: h, pixelSizeNm: pixelSizeNm, source: source,
                             note: OutsideNotes.allPadding(nothingTo: "segment", no: "particles"))
            }
            padding = nil
        }
        var (nonFinite, lo, hi) = image.nonFinitePixels(parallel: pool.parallel)
        if let nonFinite, nonFinite.foregroundCount == w * h {
            return blank(width: w, height: h, pixelSizeNm: pixelSizeNm, source: source,
                         note: OutsideNotes.allNonFinite(nothingTo: "segment", no: "particles"))
        }
        // NaN and padding together leaving no pixel (a flat frame around a NaN block): nothing to
        // draw a fill from.
        if let all = BinaryMask.union(BinaryMask.union(nonFinite, padding), bar), all.foregroundCount == w * h {
            return blank(width: w, height: h, pixelSizeNm: pixelSizeNm, source: source,
                         note: OutsideNotes.allOutside(nothingTo: "segment", no: "particles"))
        }
        var notes: [String] = []
        if let nonFinite {
            notes.append(OutsideNotes.nonFinite(nonFinite.foregroundCount, never: "particle"))
        }
        if let padding {
            notes.append(OutsideNotes.padding(padding.foregroundCount, never: "particle"))
        }
        var fill: Float = 0
        let outside = BinaryMask.union(BinaryMask.union(nonFinite, padding), bar)
        // Before the fill: the surface is fitted to the specimen's pixels, and the fill is drawn
        // from the flattened ones (drawn first, it carried the gradient into the flattened image
        // the wrong way round where the surface divides it).
        if flattens { image = image.flattenedIllumination(excluding: outside, parallel: pool.parallel) }
        if let outside {
            fill = image.fillLikeOthers(outside, parallel: pool.parallel)
            (lo, hi) = image.extremes(parallel: pool.parallel)
        }
        // Finding and filling what shows no specimen (a scan of the rows for flat runs when there is none).
        let outsideSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        var result = segmentFinite(image, oneValue: lo == hi ? lo : nil, pixelSizeNm: pixelSizeNm, source: source, tileSize: tileSize, pool: pool)
        result.timings.insert(("outside", outsideSeconds), at: 0)
        result.nonFinite = nonFinite; result.padding = padding; result.bar = bar; result.outsideValue = fill
        if let outside {  // `result.outside`, made once here
            for i in 0..<outside.values.count where outside.values[i] != 0 {
                result.mask.values[i] = 0; result.probability.pixels[i] = 0; result.outsidePixels += 1
            }
        }
        result.notes.insert(contentsOf: notes, at: 0)
        result.notes += plausibilityNotes(result)
        return result
    }

    /// A mask over this share of the specimen is told of: micrographs of separate particles on
    /// carbon show far less (sim-v1's at most 0.32), while an illumination or thickness gradient,
    /// inverted contrast or a wrong calibration can turn most of an image into "particle".
    public static let implausibleCoverage = 0.6
    /// An image resampled by more than this factor (either way) to the model's scale is told
    /// of: its calibration is the first thing to check when its particles look wrong.
    public static let largeRescale = 5.0

    /// What a user should check about a particle area of `share` of the specimen (measured:
    /// holes filled), or nil when it looks like separate particles on carbon.
    public static func coverageNote(_ share: Double) -> String? {
        guard share > implausibleCoverage else { return nil }
        return String(format: "%.1f %% of the image is particle, far more than separate particles on carbon show: an illumination or thickness gradient, inverted contrast or a wrong pixel size can do this; check the overlay", 100 * share)
    }

    /// What a user should check about a result resampled far to the model's scale.
    func plausibilityNotes(_ r: SegmentedImage) -> [String] {
        guard let p = r.pixelSizeNm, let m = model.metadata.trainingPixelSizeNm,
              r.scale > Segmenter.largeRescale || r.scale < 1 / Segmenter.largeRescale else { return [] }
        return [String(format: "resampled %.3g× to the model's %.4g nm/px from %.4g nm/px (%@): if the particles look wrong, check the pixel size", r.scale, m, p,
                       r.pixelSizeSource == .file ? "the file's calibration" : r.pixelSizeSource.rawValue)]
    }

    /// A result with nothing to segment: every probability 0, no mask, and why.
    private func blank(width: Int, height: Int, pixelSizeNm: Double?, source: PixelSizeSource, note: String) -> SegmentedImage {
        var blank = SegmentedImage(probability: FloatImage(width: width, height: height), mask: BinaryMask(width: width, height: height),
                                   threshold: threshold, pixelSizeNm: pixelSizeNm, pixelSizeSource: source, scale: scale(for: pixelSizeNm))
        blank.notes = [note]
        return blank
    }

    /// `segment` of an image of finite pixels; `oneValue`: the value of an image of one value.
    private func segmentFinite(_ image: FloatImage, oneValue: Float?, pixelSizeNm: Double?, source: PixelSizeSource, tileSize: Int?,
                               pool: ThreadPool) -> SegmentedImage {
        var tile = tileSize
        if tile == nil, case .success(let plan) = memoryPlan(width: image.width, height: image.height, pixelSizeNm: pixelSizeNm) {
            tile = plan.tileSize
        }
        let predictor = tile.map { TiledPredictor(engine: self.predictor.engine, tileSize: $0) } ?? self.predictor
        // An image of one value has nothing to segment: its normalised copy would be all zeros, which
        // the network, trained on texture, may read as anything.
        if let lo = oneValue {
            return blank(width: image.width, height: image.height, pixelSizeNm: pixelSizeNm, source: source,
                         note: OutsideNotes.oneValue(lo, nothingTo: "segment", no: "particles"))
        }
        var timings: [(String, Double)] = []
        func timed<T>(_ name: String, _ body: () -> T) -> T {
            let start = DispatchTime.now().uptimeNanoseconds
            let r = body()
            timings.append((name, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9))
            return r
        }
        let scale = self.scale(for: pixelSizeNm)
        let (netWidth, netHeight) = networkSize(width: image.width, height: image.height, pixelSizeNm: pixelSizeNm)
        let scaled = timed("resample") { resample(image, width: netWidth, height: netHeight, parallel: pool.parallel) }
        let prepared = timed("preprocess") { recipe.apply(scaled, pool: pool) }
        let t = threshold
        // At the image's own scale and without augmentation, the mask comes with the map, row by
        // row as the network writes it (no pass over the map after).
        var networkMask: BinaryMask?
        let p = timed("network") {
            if !options.testTimeAugmentation && netWidth == image.width && netHeight == image.height {
                let (p, mask) = predictor.probabilitiesAndMask(prepared, threshold: t, pool: pool)
                networkMask = mask
                return p
            }
            guard options.testTimeAugmentation else { return predictor.probabilities(prepared, pool: pool) }
            var sum = [Float](repeating: 0, count: prepared.count)
            for k in 0..<8 {
                let q = Dihedral(k).inverse(predictor.probabilities(Dihedral(k).apply(prepared), pool: pool))
                for i in 0..<sum.count { sum[i] += q.pixels[i] / 8 }
            }
            return FloatImage(width: prepared.width, height: prepared.height, pixels: sum)
        }
        // The resampling filter overshoots near sharp edges: probabilities are clamped to [0, 1]
        // (which leaves the mask, p > t, as it is for t in [0, 1)).
        let probability = timed("resample_back") {
            guard netWidth != image.width || netHeight != image.height else { return p }
            return resample(p, width: image.width, height: image.height, clamp: 0...1, parallel: pool.parallel)
        }
        let mask = timed("threshold") { networkMask ?? BinaryMask(probability, threshold: t, parallel: pool.parallel) }
        return SegmentedImage(probability: probability, mask: mask, threshold: t, pixelSizeNm: pixelSizeNm,
                              pixelSizeSource: source, scale: scale, timings: timings)
    }
}

/// One of the 8 symmetries of the square: `k & 3` quarter turns, then a horizontal flip if `k & 4`.
public struct Dihedral: Sendable {
    public let k: Int
    public init(_ k: Int) { self.k = k & 7 }

    public func apply(_ image: FloatImage) -> FloatImage {
        var out = image
        for _ in 0..<(k & 3) { out = Dihedral.quarterTurn(out) }
        return k & 4 != 0 ? out.flippedHorizontally() : out
    }

    public func inverse(_ image: FloatImage) -> FloatImage {
        var out = k & 4 != 0 ? image.flippedHorizontally() : image
        for _ in 0..<((4 - (k & 3)) & 3) { out = Dihedral.quarterTurn(out) }
        return out
    }

    /// Rotated by 90° (clockwise on screen): new (x, y) = (h − 1 − y, x).
    static func quarterTurn(_ image: FloatImage) -> FloatImage {
        let w = image.width, h = image.height
        var pixels = [Float](repeating: 0, count: w * h)
        for y in 0..<h { for x in 0..<w { pixels[x * h + (h - 1 - y)] = image.pixels[y * w + x] } }
        return FloatImage(width: h, height: w, pixels: pixels)
    }
}

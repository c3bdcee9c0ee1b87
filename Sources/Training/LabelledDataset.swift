import Foundation
import MicrographIO
import Preprocessing
import ParticleAnalysis

/// Why a data folder, a checkpoint or the training settings cannot be used: the file (or flag)
/// and the problem, printed as `file: reason` like every other input error.
public typealias DatasetError = MicrographError

/// One labelled micrograph: raw intensities, the particle mask, its calibration and its group.
public struct LabelledImage: Sendable {
    public var name: String
    public var url: URL
    public var image: FloatImage
    public var mask: BinaryMask
    public var pixelSizeNm: Double?
    /// Material from a `manifest.jsonl` (beside the images or one folder up), else the folder name.
    public var group: String

    public init(name: String, url: URL, image: FloatImage, mask: BinaryMask, pixelSizeNm: Double?, group: String) {
        self.name = name; self.url = url; self.image = image; self.mask = mask; self.pixelSizeNm = pixelSizeNm; self.group = group
    }

    /// Its size at `nm` per pixel (as it is without a pixel size).
    public func sizeResampled(toPixelSizeNm nm: Double) -> (width: Int, height: Int) {
        guard let p = pixelSizeNm else { return (image.width, image.height) }
        return (max(1, Int((Double(image.width) * p / nm).rounded())), max(1, Int((Double(image.height) * p / nm).rounded())))
    }

    /// The image and its mask at `nm` per pixel, as segment resamples its inputs to the model's
    /// scale: the image through the antialiasing filter, the mask as a 0/1 map through the same
    /// filter, cut at ½. Itself when it has no pixel size or is already there.
    public func resampled(toPixelSizeNm nm: Double) -> LabelledImage {
        guard let p = pixelSizeNm, p != nm else { return self }
        let (w, h) = sizeResampled(toPixelSizeNm: nm)
        var out = self
        out.image = resample(image, width: w, height: h)
        let map = resample(FloatImage(width: mask.width, height: mask.height, pixels: mask.values.map(Float.init)), width: w, height: h)
        out.mask = BinaryMask(width: w, height: h, values: map.pixels.map { $0 >= 0.5 ? 1 : 0 })
        out.pixelSizeNm = nm
        return out
    }
}

/// Folders of micrographs with `NAME_mask.png` (or `NAME_mask.tif`, as ImageJ saves masks)
/// beside each image (the layout of `../shared/data/sim-v1`). A stem stored in several formats
/// counts once (the first of `formatPreference`); `*_mask.*`, `*_labels.*`, `*_prob.*` and
/// `contact_sheet.png` are never images.
public enum LabelledDataset {
    /// Extensions taken as images, in order of preference when a stem has several.
    public static let formatPreference = ["mrc", "tif", "tiff", "dm4", "dm3", "emd", "ser", "npy", "png"]
    /// Extensions a mask may have, in order of preference (any case).
    public static let maskExtensions = ["png", "tif", "tiff"]
    /// Images in formats NanoFind does not read, which a user may have exported a micrograph as.
    static let unreadImageExtensions: Set<String> = ["jpg", "jpeg", "bmp", "gif", "webp", "heic"]
    /// A mask whose particle pixels are more than this fraction of it is likely inverted.
    public static let invertedFraction = 0.5

    /// What to tell of a mask that is mostly particle, as an inverted one is (ImageJ's inverting
    /// LUT shows particles black on white); nil for the others.
    public static func invertedNote(_ mask: BinaryMask) -> String? {
        let fraction = Double(mask.foregroundCount) / Double(max(1, mask.values.count))
        guard fraction > invertedFraction else { return nil }
        return "\(String(format: "%.0f", 100 * fraction)) % of its pixels are particle; a mask marks particles (255 or 1) on a 0 background: is it inverted (ImageJ's inverting LUT)?"
    }

    /// What one folder holds: an image per stem, each with its mask file where there is one, and
    /// what is there but will not be used, each with the reason (a file that looks like a mask
    /// of no image, or an image in a format NanoFind does not read).
    public struct FolderContents {
        public var images: [(url: URL, mask: URL?)] = []
        public var unused: [(url: URL, reason: String)] = []
        /// Files named like a mask of an image but not as NanoFind reads masks (`NAME-mask.png`,
        /// `NAME_mask.jpg`), by the image's name: what to point at when its mask is missing.
        public var nearMisses: [String: URL] = [:]
    }

    /// The image files of a folder (not recursive), one per stem, sorted by name.
    public static func imageFiles(in folder: URL) throws -> [URL] { try contents(of: folder).images.map(\.url) }

    /// Whether `stem` (a name without its extension) is a mask's: `NAME_mask`, or written like one
    /// (`NAME-mask`, `NAME.mask`, `NAME_Mask`), which is never taken as an image.
    static func maskBase(_ stem: String) -> String? {
        for sep in ["_", "-", ".", " "] {
            let suffix = sep + "mask"
            if stem.count > suffix.count, stem.lowercased().hasSuffix(suffix) { return String(stem.dropLast(suffix.count)) }
        }
        return nil
    }

    public static func contents(of folder: URL) throws -> FolderContents {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDir) else {
            throw DatasetError(file: folder.path, reason: "no such folder")
        }
        guard isDir.boolValue else { throw DatasetError(file: folder.path, reason: "is not a folder") }
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { !$0.hasPrefix(".") }.sorted()
        // Where the folder's names fold case (macOS), `IMG_1_mask.png` is the mask of `img_1.tif`,
        // as opening the one name opens the other there.
        let folds = namesFoldCase(in: folder)
        let key = { (stem: String) in folds ? stem.lowercased() : stem }
        var byStem: [String: (rank: Int, url: URL)] = [:]
        var masks: [String: (rank: Int, url: URL)] = [:]  // `NAME_mask.ext` by `key(NAME)`
        var maskLike: [URL] = [], unreadable: [String: URL] = [:]
        for name in names {
            let url = folder.appendingPathComponent(name)
            let ext = url.pathExtension.lowercased(), stem = url.deletingPathExtension().lastPathComponent
            if key(stem).hasSuffix("_mask"), let rank = maskExtensions.firstIndex(of: ext) {
                let base = key(String(stem.dropLast(5)))
                if masks[base].map({ $0.rank > rank }) ?? true { masks[base] = (rank, url) }
                continue
            }
            if maskBase(stem) != nil { maskLike.append(url); continue }
            if unreadImageExtensions.contains(ext) { unreadable[stem] = url; continue }
            guard let rank = formatPreference.firstIndex(of: ext) else { continue }
            if stem.hasSuffix("_labels") || stem.hasSuffix("_prob") { continue }
            if stem == "contact_sheet" { continue }  // the overview `simulate` (and sim-v1) writes
            if let existing = byStem[stem], existing.rank <= rank { continue }
            byStem[stem] = (rank, url)
        }
        var out = FolderContents()
        let imageKeys = Set(byStem.keys.map(key))
        for stem in byStem.keys.sorted() { out.images.append((byStem[stem]!.url, masks[key(stem)]?.url)) }
        for (base, mask) in masks.sorted(by: { $0.key < $1.key }) where !imageKeys.contains(base) {
            if let image = unreadable.first(where: { key($0.key) == base })?.value {
                out.unused.append((image, "is a .\(image.pathExtension) file, which nanofind does not read (it reads MRC, TIFF, DM3/DM4, SER, EMD, PNG and NumPy .npy; save the micrograph as TIFF); it and \(mask.url.lastPathComponent) are not used"))
            } else {
                out.unused.append((mask.url, "is a mask without an image (no \(base).mrc, .tif, .dm4, … beside it); not used"))
            }
        }
        for url in maskLike {
            let base = maskBase(url.deletingPathExtension().lastPathComponent) ?? ""
            if let image = byStem.keys.first(where: { key($0) == key(base) }), masks[key(base)] == nil {
                out.nearMisses[image] = url  // said with the missing mask
                continue
            }
            out.unused.append((url, "looks like a mask but is not named NAME_mask.png or NAME_mask.tif; not used"))
        }
        return out
    }

    /// Loads every labelled image of `folders` (a folder named twice, or through a link, once).
    /// Checks each mask (present, same size, binary with 0 as background) before anything else
    /// is done with the data; `warn` gets a line (`file: what`) for each file of the folders that
    /// is not used and each mask that looks inverted, once all is loaded (a refused folder gets
    /// its one error line alone).
    public static func load(_ folders: [URL], open: (URL) throws -> [Micrograph] = MicrographReader.open,
                            warn: (String) -> Void = { _ in }) throws -> [LabelledImage] {
        var out: [LabelledImage] = [], warnings: [String] = []
        var seen = Set<String>()
        for folder in folders where seen.insert(folder.resolvingSymlinksInPath().standardizedFileURL.path).inserted {
            let listing = try contents(of: folder)
            for (url, reason) in listing.unused { warnings.append("\(url.path): \(reason)") }
            guard !listing.images.isEmpty else {
                throw DatasetError(file: folder.path, reason: "holds no micrographs with masks (expected NAME.mrc/.tif/… and NAME_mask.png or NAME_mask.tif)")
            }
            let groups = manifestGroups(near: folder)
            for (url, maskFile) in listing.images {
                let stem = url.deletingPathExtension().lastPathComponent
                guard let maskURL = maskFile else {
                    let near = listing.nearMisses[stem].map { "; \($0.lastPathComponent) is not read as one" } ?? ""
                    throw DatasetError(file: url.path, reason: "has no mask (expected \(stem)_mask.png or \(stem)_mask.tif beside it\(near))")
                }
                let frames = try open(url)
                guard let first = frames.first else { throw DatasetError(file: url.path, reason: "holds no image") }
                // As stored (`Micrograph.storedValues`): Fiji's mask with an inverting LUT is 255 the particle.
                let maskFrames = try MicrographReader.open(maskURL).map(\.storedValues)
                guard let m = maskFrames.first else { throw DatasetError(file: maskURL.path, reason: "holds no image") }
                guard m.width == first.width, m.height == first.height else {
                    throw DatasetError(file: maskURL.path, reason: "is \(m.width)×\(m.height) pixels, the image is \(first.width)×\(first.height)")
                }
                // evaluate measures the masks' particles.
                if let problem = ParticleMeasurement.sizeProblem(width: m.width, height: m.height) {
                    throw DatasetError(file: maskURL.path, reason: problem)
                }
                let values = m.floatFrame(0)
                let distinct = Set(values)
                guard distinct.count <= 2, distinct.allSatisfy({ $0 == 0 || $0 == 1 || $0 == 255 || $0 == 65535 }) else {
                    let shown = distinct.sorted().prefix(4).map { Int($0) }
                    if m.channels > 1 {
                        throw DatasetError(file: maskURL.path, reason: "is a colour image that is not black and white (grey levels \(shown)…; particles drawn in colour?): a mask is grey, 0 background and 255 (or 1) particle")
                    }
                    throw DatasetError(file: maskURL.path, reason: "is not a binary mask (values \(shown)…; expected 0 and 255 or 0 and 1)")
                }
                guard distinct.count < 2 || distinct.contains(0) else {
                    throw DatasetError(file: maskURL.path, reason: "has no 0 background (values \(distinct.sorted().map { Int($0) })); a mask is 0 background and 255 (or 1) particle")
                }
                let mask = BinaryMask(width: m.width, height: m.height, values: values.map { $0 > 0 ? 1 : 0 })
                if let note = invertedNote(mask) { warnings.append("\(maskURL.path): \(note)") }
                if frames.count > 1 || first.frames > 1 {
                    warnings.append("\(url.path): holds \(max(frames.count, first.frames)) images; only the first is used with \(maskURL.lastPathComponent)")
                }
                let image = try FloatImage(first, frame: 0)
                // Training data must be clean: a NaN would turn every loss and weight into NaN.
                let notFinite = image.pixels.reduce(0) { $0 + ($1.isFinite ? 0 : 1) }
                guard notFinite == 0 else { throw DatasetError(file: url.path, reason: "has \(notFinite) pixels that are NaN or infinite") }
                let pixelSize = try first.squarePixelSizeNm(file: url.path)
                out.append(LabelledImage(name: stem, url: url, image: image, mask: mask, pixelSizeNm: pixelSize,
                                         group: groups[stem] ?? folder.lastPathComponent))
            }
        }
        warnings.forEach(warn)
        return out
    }

    /// Material per image name from `manifest.jsonl` in the folder or its parent (sim-v1 keeps it
    /// one level above train/ and test/).
    public static func manifestGroups(near folder: URL) -> [String: String] {
        var groups: [String: String] = [:]
        for entry in manifestEntries(near: folder) {
            if let name = entry["name"] as? String, let material = entry["material"] as? String { groups[name] = material }
        }
        return groups
    }

    /// The raw entries of the nearest `manifest.jsonl` (folder, then parent); empty when none.
    public static func manifestEntries(near folder: URL) -> [[String: Any]] {
        for dir in [folder, folder.deletingLastPathComponent()] {
            let url = dir.appendingPathComponent("manifest.jsonl")
            guard let text = try? String(contentsOf: url, encoding: .utf8) else { continue }
            return text.split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
        }
        return []
    }
}

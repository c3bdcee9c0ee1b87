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
}

/// Folders of micrographs with `NAME_mask.png` beside each image (the layout of
/// `../shared/data/sim-v1`). A stem stored in several formats counts once (the first of
/// `formatPreference`); `*_mask.png`, `*_labels.png`, `*_labels.tif` and `contact_sheet.png`
/// are never images.
public enum LabelledDataset {
    /// Extensions taken as images, in order of preference when a stem has several.
    public static let formatPreference = ["mrc", "tif", "tiff", "dm4", "dm3", "emd", "ser", "npy", "png"]

    /// The image files of a folder (not recursive), one per stem, sorted by name.
    public static func imageFiles(in folder: URL) throws -> [URL] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDir) else {
            throw DatasetError(file: folder.path, reason: "no such folder")
        }
        guard isDir.boolValue else { throw DatasetError(file: folder.path, reason: "is not a folder") }
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path)
        var byStem: [String: (rank: Int, url: URL)] = [:]
        for name in names where !name.hasPrefix(".") {
            let url = folder.appendingPathComponent(name)
            let ext = url.pathExtension.lowercased()
            guard let rank = formatPreference.firstIndex(of: ext) else { continue }
            let stem = url.deletingPathExtension().lastPathComponent
            if stem.hasSuffix("_mask") || stem.hasSuffix("_labels") || stem.hasSuffix("_prob") { continue }
            if stem == "contact_sheet" { continue }  // the overview `simulate` (and sim-v1) writes
            if let existing = byStem[stem], existing.rank <= rank { continue }
            byStem[stem] = (rank, url)
        }
        return byStem.keys.sorted().compactMap { byStem[$0]?.url }
    }

    /// Loads every labelled image of `folders`. Checks each mask (present, same size, binary)
    /// before anything else is done with the data.
    public static func load(_ folders: [URL], open: (URL) throws -> [Micrograph] = MicrographReader.open) throws -> [LabelledImage] {
        var out: [LabelledImage] = []
        for folder in folders {
            let files = try imageFiles(in: folder)
            guard !files.isEmpty else {
                throw DatasetError(file: folder.path, reason: "holds no micrographs with masks (expected NAME.mrc/.tif/… and NAME_mask.png)")
            }
            let groups = manifestGroups(near: folder)
            for url in files {
                let stem = url.deletingPathExtension().lastPathComponent
                let maskURL = folder.appendingPathComponent(stem + "_mask.png")
                guard FileManager.default.fileExists(atPath: maskURL.path) else {
                    throw DatasetError(file: url.path, reason: "has no mask (expected \(maskURL.lastPathComponent) beside it)")
                }
                let frames = try open(url)
                guard let first = frames.first else { throw DatasetError(file: url.path, reason: "holds no image") }
                let maskFrames = try MicrographReader.open(maskURL)
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
                    throw DatasetError(file: maskURL.path, reason: "is not a binary mask (values \(distinct.sorted().prefix(4).map { Int($0) })…; expected 0 and 255 or 0 and 1)")
                }
                let mask = BinaryMask(width: m.width, height: m.height, values: values.map { $0 > 0 ? 1 : 0 })
                let image = try FloatImage(first, frame: 0)
                // Training data must be clean: a NaN would turn every loss and weight into NaN.
                let notFinite = image.pixels.reduce(0) { $0 + ($1.isFinite ? 0 : 1) }
                guard notFinite == 0 else { throw DatasetError(file: url.path, reason: "has \(notFinite) pixels that are NaN or infinite") }
                let pixelSize = try first.squarePixelSizeNm(file: url.path)
                out.append(LabelledImage(name: stem, url: url, image: image, mask: mask, pixelSizeNm: pixelSize,
                                         group: groups[stem] ?? folder.lastPathComponent))
            }
        }
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

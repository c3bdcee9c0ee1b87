import Foundation
import MicrographIO
import NanoNet
import NanoTensor
import ParticleAnalysis
import Preprocessing

/// Settings of a batch that are not the segmenter's.
public struct BatchSettings: Sendable {
    public var outputDir: URL
    public var overwrite = false
    public var probabilityFormat: ImageOutputs.ProbabilityFormat = .tif
    /// Objects smaller than this are not particles (needs the pixel size; else `minimumAreaPx`).
    public var minimumAreaNm2 = ParticleMeasurement.smallestParticleNm2
    public var minimumAreaPx = ParticleMeasurement.smallestParticlePxUncalibrated
    /// Split touching particles (`ParticleMeasurement`'s `splitTouching`).
    public var splitTouching = true
    /// Process only the inputs of shard `k` of `n` (1-based), chosen by a hash of the path.
    public var shard: (k: Int, n: Int) = (1, 1)
    /// Whether output names differing only in letter case name one file in `outputDir` (macOS'
    /// default volumes, FAT and exFAT drives): then two inputs whose stems differ only in case
    /// clash as two of one stem do. Nil: found out in the output folder (`namesFoldCase(in:)`).
    public var foldsNameCase: Bool?

    public init(outputDir: URL) { self.outputDir = outputDir }
}

/// A file whose image needs more memory than the segmenter's budget (`--memory`, or a job's
/// share of it); nothing was written for it.
public struct ImageExceedsMemory: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let error: MicrographError
    public init(_ error: MicrographError) { self.error = error }
    public var description: String { error.description }
    public var errorDescription: String? { description }
}

/// `nanofind segment` over many files: inputs expanded (folders recursively), sharded, skipped
/// when their outputs are newer, segmented and measured one image at a time, outputs written
/// atomically; a bad file is reported and the batch goes on.
public final class BatchSegmentation: @unchecked Sendable {
    public let segmenter: Segmenter
    public let settings: BatchSettings
    public let modelName: String
    /// SHA-256 of the model file, when known: each image's summary records it, and a re-run with
    /// a different model under the same name (retrained, say) redoes the image.
    public var modelDigest: String?
    public var open: (URL) throws -> [Micrograph] = MicrographReader.open
    /// Called (from any job) when `--pixel-size` replaces a file's own calibration that differs
    /// from it by more than 2 %: the file, its own pixel size and the one used.
    public var calibrationReplaced: (@Sendable (URL, Double, Double) -> Void)?
    /// Called when an input could not be segmented (the error) and another file of its name in
    /// its folder (`run`'s `alternates`) was segmented in its place.
    public var segmentedInstead: (@Sendable (URL, Error, URL) -> Void)?
    /// Called (from any job) with an image's notes (`SegmentedImage.notes`): the file, the
    /// image's name and the note.
    public var imageNote: (@Sendable (URL, String, String) -> Void)?
    /// Every input of the run (resolved paths): no output may be written over one.
    private var inputPaths: Set<String> = []
    /// Output names given out in this run (two inputs with one stem must not overwrite each other),
    /// by `nameKey`; files may be processed concurrently, so every use goes through `namesLock`.
    public private(set) var usedNames: [String: String] = [:]
    /// The inputs' identities (device and inode): an output is never written over one, however
    /// its path is spelled (a link, another case on a case-insensitive volume, a hard link).
    private var inputIdentities: Set<FileIdentity> = []
    /// Whether the output folder's names fold case (`BatchSettings.foldsNameCase`).
    private let foldsCase: Bool
    /// An output name or stem as the output folder tells names apart.
    func nameKey(_ name: String) -> String { foldsCase ? name.lowercased() : name }
    /// The inputs that hold names in `usedNames` (a set, so that skipping done files stays linear).
    private var claimedInputs: Set<String> = []
    /// The output folder's names as the run first looked, under every stem they may belong to
    /// (each part of the name before a '.' or '_'), listed once: a re-run over thousands of done
    /// files listed the whole folder for each (2000 files: 13.6 s, more than segmenting them).
    private var listing: [Substring: [String]]?
    private let namesLock = NSLock()

    /// The names in the output folder that may be outputs of inputs of stem `stem` (`stem.*`,
    /// `stem_*`, and their hidden marks), from `listing`. Call with `namesLock` held.
    private func outputNames(forStem stem: String) -> [String] {
        if listing == nil {
            var byKey: [Substring: [String]] = [:]
            for name in (try? FileManager.default.contentsOfDirectory(atPath: settings.outputDir.path)) ?? [] {
                // Every prefix ending before a '.' or '_' is a stem the name may belong to, of the
                // name as it is (an input `.x.mrc`'s `.x.summary.json`) and without the dot that
                // hides a mark (`.x_0.writing` belongs to `x`).
                var keys: Set<Substring> = []
                for form in [Substring(name), name.hasPrefix(".") ? name.dropFirst() : Substring(name)] {
                    for i in form.indices where i > form.startIndex && (form[i] == "." || form[i] == "_") { keys.insert(form[..<i]) }
                }
                for k in keys { byKey[k, default: []].append(name) }
            }
            listing = byKey
        }
        return listing?[Substring(stem)] ?? []
    }

    public init(segmenter: Segmenter, settings: BatchSettings, modelName: String) {
        self.segmenter = segmenter; self.settings = settings; self.modelName = modelName
        foldsCase = settings.foldsNameCase ?? namesFoldCase(in: settings.outputDir)
    }

    /// What a folder is searched for (a file named on the command line is read by its content,
    /// whatever its name): every extension `MicrographReader` knows, the MRC family's included.
    public static let imageExtensions: Set<String> = Set(formatPreference)
    /// Which of two files of one name in a folder is segmented: the microscope's own formats
    /// first (the original carries the full calibration and dynamic range), then MRC, then
    /// the exports.
    public static let formatPreference = ["dm4", "dm3", "emd", "ser", "mrc", "mrcs", "map", "st", "ali", "rec", "preali",
                                          "tif", "tiff", "npy", "png"]

    /// A file's place in `formatPreference` (unknown extensions last).
    static func formatRank(_ u: URL) -> Int { formatPreference.firstIndex(of: u.pathExtension.lowercased()) ?? Int.max }

    /// `expand`'s `sameName` as `run`'s `alternates`: for each file taken, the others of its
    /// name in the order of `formatPreference`.
    public static func alternates(_ sameName: [(skipped: URL, taken: URL)]) -> [URL: [URL]] {
        return Dictionary(grouping: sameName, by: \.taken).mapValues { pairs in
            pairs.map(\.skipped).sorted { (formatRank($0), $0.path) < (formatRank($1), $1.path) }
        }
    }

    /// The files to process: files as given, folders searched recursively for micrographs (not
    /// NanoFind's own outputs or label images), in a stable order, then this shard's share. An
    /// output folder inside an input folder (or the same) is searched too: its outputs are left
    /// out by their names. `empty`: the folders in which the search found nothing.
    public func expand(_ inputs: [String]) -> (files: [URL], problems: [MicrographError], empty: [URL], sameName: [(skipped: URL, taken: URL)]) {
        var files: [URL] = [], problems: [MicrographError] = [], empty: [URL] = [], sameName: [(skipped: URL, taken: URL)] = []
        // Files named on the command line: of files of one name in a folder, the one named wins.
        let named = Set(inputs.compactMap { input -> String? in
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(atPath: input, isDirectory: &isDir) && !isDir.boolValue
                ? URL(fileURLWithPath: input).standardizedFileURL.path : nil
        })
        for input in inputs {
            let url = URL(fileURLWithPath: input)
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
                problems.append(MicrographError.noSuchFile(url)); continue
            }
            guard isDir.boolValue else { files.append(url); continue }
            let found = FileManager.default.enumerator(at: url, includingPropertiesForKeys: [.isRegularFileKey])
            var inFolder: [URL] = []
            while let f = found?.nextObject() as? URL {
                let name = f.lastPathComponent
                guard !name.hasPrefix("."), BatchSegmentation.imageExtensions.contains(f.pathExtension.lowercased()) else { continue }
                let stem = f.deletingPathExtension().lastPathComponent
                if ["_mask", "_labels", "_prob", "_overlay"].contains(where: { stem.hasSuffix($0) }) || stem == "contact_sheet" { continue }
                // A run's histogram (this one's, a shard's or a merge's), beside its summary.json.
                if name == "size_histogram.png"
                    && FileManager.default.fileExists(atPath: f.deletingLastPathComponent().appendingPathComponent("summary.json").path) {
                    continue
                }
                inFolder.append(f)
            }
            if inFolder.isEmpty { empty.append(url) }
            // One file per name in a folder (an image and its export, x.dm4 beside x.tif): the
            // first of `formatPreference`, the others told of, not refused as name clashes.
            let groups = Dictionary(grouping: inFolder) { $0.deletingLastPathComponent().path + "/" + nameKey($0.deletingPathExtension().lastPathComponent) }
            var kept: [URL] = []
            for group in groups.values {
                func key(_ u: URL) -> (Int, Int, String) { (named.contains(u.standardizedFileURL.path) ? 0 : 1, BatchSegmentation.formatRank(u), u.path) }
                let ordered = group.sorted { key($0) < key($1) }
                kept.append(ordered[0])
                sameName += ordered.dropFirst().map { ($0, ordered[0]) }
            }
            files += kept.sorted { $0.path < $1.path }
        }
        // A file named twice (directly and through its folder, say) is one input, taken once. (A
        // link to a file is another input, with outputs of its own name, as before.)
        var seen = Set<String>()
        files = files.filter { seen.insert($0.standardizedFileURL.path).inserted }
        let (k, n) = settings.shard
        sameName.sort { $0.skipped.path < $1.skipped.path }
        guard n > 1 else { return (files, problems, empty, sameName) }
        // Two inputs with one stem: the later is refused, as without --shard, whichever shard
        // it falls in (each shard alone would take both, and merge would then refuse them). An
        // input whose names may be a stack's frames' (`x_1` beside `x`) goes to the stack's
        // shard, where the run settles which gets them (`mayShareNames`).
        var firstWithStem: [String: URL] = [:]
        for url in files where firstWithStem[nameKey(url.deletingPathExtension().lastPathComponent)] == nil {
            firstWithStem[nameKey(url.deletingPathExtension().lastPathComponent)] = url
        }
        func shardKey(_ url: URL) -> String {
            let stem = url.deletingPathExtension().lastPathComponent
            if let base = BatchSegmentation.stackStem(ofFrameName: stem), let stack = firstWithStem[nameKey(base)] { return stack.standardizedFileURL.path }
            return url.standardizedFileURL.path
        }
        var mine: [URL] = []
        for url in files {
            let inShard = BatchSegmentation.shard(of: shardKey(url), count: n) == k - 1
            let stem = url.deletingPathExtension().lastPathComponent
            if let earlier = firstWithStem[nameKey(stem)], earlier != url {
                if inShard { problems.append(BatchSegmentation.nameClash(url, name: stem, earlier: earlier.path)) }
                continue
            }
            if inShard { mine.append(url) }
        }
        return (mine, problems, empty, sameName)
    }

    /// Which of `count` shards a path falls in: FNV-1a of its bytes, so the same path always
    /// lands in the same shard.
    public static func shard(of path: String, count: Int) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in path.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return Int(h % UInt64(max(1, count)))
    }

    /// What became of one input of `run`.
    public enum Outcome: Sendable {
        /// Segmented now (its images' summaries).
        case processed([ImageSummary])
        /// Its outputs were there and newer than it.
        case skipped([ImageSummary])
        case failed(Error)
    }

    /// Segments `files` `jobs` at a time (default `jobs`: one per `threadsPerJob` threads of
    /// `pool`, at most one per file, and no more than leave each job enough of the memory for a
    /// 4096² micrograph in full-size tiles, `Segmenter.bytesForPreferredTiles`: smaller shares
    /// would mean smaller tiles, whose margins cost network time), each job with its share of
    /// the threads and of the segmenter's memory. A
    /// file whose image needs more than its job's share waits, and is segmented alone with all
    /// the memory and every thread once the others are done; so does a file whose names may be
    /// another's frames' (`mayShareNames`), so that the earlier input gets them. `report` is
    /// called once per file, one call at a time, with the seconds it took.
    ///
    /// `alternates`: for an input, the other files of its name in its folder (`expand`'s
    /// `sameName`), in the order to try them when it cannot be segmented (an original the
    /// readers refuse beside its export): the first that can is segmented in its place.
    public func run(_ files: [URL], alternates: [URL: [URL]] = [:], jobs: Int? = nil, pool: ThreadPool = .shared,
                    report: @escaping @Sendable (URL, Outcome, Double) -> Void) {
        let everyInput = files + alternates.values.joined()
        inputPaths = Set(everyInput.map(BatchSegmentation.resolved))
        inputIdentities = Set(everyInput.compactMap(FileIdentity.init))
        let threads = pool.threadCount
        let jobs = BatchSegmentation.jobs(jobs, files: files.count, threads: threads, segmenter: segmenter)
        let pools = jobs == 1 ? [pool] : BatchSegmentation.threadShares(threads, jobs: jobs).map { ThreadPool(threads: $0, pin: false) }
        var shareOptions = segmenter.options
        shareOptions.memoryBytes /= jobs
        let share = jobs == 1 ? segmenter : segmenter.with(options: shareOptions)
        // Two inputs with one stem: the earlier one in the list gets the outputs' names, as when
        // files are taken one at a time (jobs side by side would otherwise race for them).
        var firstWithStem: [String: URL] = [:], clashes: [Int: URL] = [:]
        for (index, url) in files.enumerated() {
            let stem = nameKey(url.deletingPathExtension().lastPathComponent)
            if let earlier = firstWithStem[stem] { clashes[index] = earlier } else { firstWithStem[stem] = url }
        }
        let earlierInput = clashes
        // An input whose names may be an earlier input's frames' (`x_1` beside a stack `x`, whose
        // frames are `x_0`, `x_1`, …; or the other way round) waits until the others are done,
        // so that the earlier one claims the names first whatever the timing.
        let waits = jobs > 1 ? BatchSegmentation.mayShareNames(files, key: nameKey).subtracting(earlierInput.keys) : []
        final class State: @unchecked Sendable {
            let lock = NSLock()
            var afterwards: [Int] = []
        }
        let state = State()
        @Sendable func outcome(_ index: Int, pool: ThreadPool, segmenter: Segmenter) -> (Outcome, Double) {
            let url = files[index]
            return BatchSegmentation.timed {
                if let earlier = earlierInput[index] {
                    let stem = url.deletingPathExtension().lastPathComponent
                    return .failed(BatchSegmentation.nameClash(url, name: stem, earlier: earlier.path))
                }
                if let previous = previousResults(for: url) { return .skipped(previous) }
                do { return .processed(try process(url, pool: pool, segmenter: segmenter)) } catch {
                    // Only a file that cannot be read gives way: one read but refused (too small,
                    // too large for a job's share) is refused as itself.
                    guard let others = alternates[url], !others.isEmpty, !(error is ImageExceedsMemory), (try? open(url)) == nil else {
                        return .failed(error)
                    }
                    for other in others {
                        if let previous = previousResults(for: other) {
                            segmentedInstead?(url, error, other)
                            return .skipped(previous)
                        }
                        do {
                            let done = try process(other, pool: pool, segmenter: segmenter)
                            segmentedInstead?(url, error, other)
                            return .processed(done)
                        } catch let tooLarge as ImageExceedsMemory {
                            return .failed(tooLarge)  // retried alone with all the memory, as any input
                        } catch {
                            continue
                        }
                    }
                    return .failed(error)
                }
            }
        }
        ThreadPool.sideBySide(jobs) { job in
            for index in stride(from: job, to: files.count, by: jobs) {
                if waits.contains(index) {
                    state.lock.lock(); state.afterwards.append(index); state.lock.unlock()
                    continue
                }
                let (result, seconds) = outcome(index, pool: pools[job], segmenter: share)
                state.lock.lock(); defer { state.lock.unlock() }
                if jobs > 1, case .failed(let error) = result, error is ImageExceedsMemory {
                    state.afterwards.append(index)
                } else {
                    report(files[index], result, seconds)
                }
            }
        }
        for p in pools where p !== pool { p.shutdown() }
        // Then, one at a time and in the order given: images too large for a job's share of the
        // memory, and the inputs that waited.
        for index in state.afterwards.sorted() {
            let (result, seconds) = outcome(index, pool: pool, segmenter: segmenter)
            report(files[index], result, seconds)
        }
    }

    /// The inputs (indices) whose output names may be those of another input's frames: stem
    /// `x_<k>` beside an input of stem `x` (a stack's frames are named `x_0`, `x_1`, …), both
    /// of them.
    package static func mayShareNames(_ files: [URL], key: (String) -> String = { $0 }) -> Set<Int> {
        let stems = files.map { key($0.deletingPathExtension().lastPathComponent) }
        var byStem: [String: [Int]] = [:]
        for (i, stem) in stems.enumerated() { byStem[stem, default: []].append(i) }
        var out: Set<Int> = []
        for (i, stem) in stems.enumerated() {
            guard let base = stackStem(ofFrameName: stem), let stack = byStem[base] else { continue }
            out.insert(i); out.formUnion(stack)
        }
        return out
    }

    /// The image summaries among `names` that inputs of stem `stem` may have written (`x` or `x_…`).
    static func summaryFiles(_ names: [String], stem: String) -> [String] {
        names.filter { $0.hasSuffix(".summary.json") && ($0 == "\(stem).summary.json" || $0.hasPrefix("\(stem)_")) }
    }

    /// The stem `x` whose stack's frame `stem` may name (`x_1`: `x` and a run of digits), or nil.
    static func stackStem(ofFrameName stem: String) -> String? {
        guard let cut = stem.lastIndex(of: "_") else { return nil }
        let frame = stem[stem.index(after: cut)...]
        return !frame.isEmpty && frame.allSatisfy({ $0.isASCII && $0.isNumber }) ? String(stem[..<cut]) : nil
    }

    /// Threads each file gets by default. One image keeps two busy from end to end: the
    /// network and the median filter run on every thread, the split, the measuring and the
    /// writes on two side by side. Files side by side on one thread each lost on two threads:
    /// eight 4096² MRCs took 3.09–4.67 s against 2.66–2.74 s one at a time (AMD EPYC fam 26 mod
    /// 2, 2 vCPUs, `segment` with and without `--jobs 1`, in turn), the two jobs' fresh pages
    /// costing 1.3–4.6 s of system time against 0.3 s; 32 sim-v1 images of 512² took 0.45–0.47 s
    /// either way. Side by side still wins where one particle fills most of the image (its
    /// split floods on one thread: eight 4096² tilings of sim-v1, each one component of 14 M
    /// pixels, 3.7–3.8 s with `--jobs 2` against 5.1–5.25 s), and won earlier, 1.1–1.2× on AMD
    /// EPYC fam 25 mod 17, while one image ran its measuring on one thread. On more threads, a
    /// file per two (reasoned, not measured: past two, only the network's share of an image
    /// gains from more).
    public static let threadsPerJob = 2

    /// Files at once: `asked`, else one per `threadsPerJob` threads, at most one per 4096²
    /// micrograph that the memory holds in full-size tiles; never more than the files.
    public static func jobs(_ asked: Int?, files: Int, threads: Int, segmenter: Segmenter) -> Int {
        let fitting = segmenter.options.memoryBytes / segmenter.bytesForPreferredTiles(side: 4096)
        return max(1, min(asked ?? min(max(1, threads / threadsPerJob), fitting), max(1, files)))
    }

    /// Each of `jobs` jobs' threads: every one of `threads` used (the first `threads % jobs`
    /// take one more), at least one each.
    package static func threadShares(_ threads: Int, jobs: Int) -> [Int] {
        let jobs = max(1, jobs)
        return (0..<jobs).map { j in max(1, threads / jobs + (j < threads % jobs ? 1 : 0)) }
    }

    static func timed(_ body: () -> Outcome) -> (Outcome, Double) {
        let start = DispatchTime.now().uptimeNanoseconds
        let outcome = body()
        return (outcome, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }

    /// The run's settings that shape a result besides the model's name, threshold and pixel
    /// size, as each image's summary records them (a re-run with others redoes the image); the
    /// model's `contentDigest` (its first 16 hex digits) when known.
    public var segmentationSettings: String {
        String(format: "split_touching=%@ min_area_nm2=%g min_area_px=%d preprocessing=%@ tta=%@", settings.splitTouching ? "yes" : "no",
               settings.minimumAreaNm2, settings.minimumAreaPx, segmenter.recipe.description, segmenter.options.testTimeAugmentation ? "yes" : "no")
            + (segmenter.flattens ? " flatten=quadratic" : "")
            + (modelDigest.map { " model_digest=\($0.prefix(16))" } ?? "")
    }

    /// A file's images: every frame of every micrograph in it, in order (a micrograph of no
    /// frames counted as one image).
    public static func images(of micrographs: [Micrograph]) -> [(Micrograph, Int)] {
        micrographs.flatMap { m in (0..<max(1, m.frames)).map { (m, $0) } }
    }

    /// Throws, naming the file, when any of its micrographs is larger than particles can be
    /// measured in (`ParticleMeasurement.largestSide`): segment, measure and bragg check every
    /// image this way before the first is processed.
    public static func checkMeasurable(_ micrographs: [Micrograph], file url: URL) throws {
        for m in micrographs {
            if let problem = ParticleMeasurement.sizeProblem(width: m.width, height: m.height) { throw MicrographError(url: url, reason: problem) }
        }
    }

    /// Output names of a file's images (`<stem>`, or `<stem>_<k>` for several).
    public static func names(for url: URL, count: Int) -> [String] {
        let stem = url.deletingPathExtension().lastPathComponent
        return (0..<count).map { count == 1 ? stem : "\(stem)_\($0)" }
    }

    /// What identifies an input's content without reading it: its size and modification time
    /// (to the nanosecond). A file replaced by another, even one dated earlier (`cp -p`,
    /// `rsync -a`), has another; nil when the file cannot be looked at.
    public static func inputSignature(_ url: URL) -> String? {
        var st = stat()
        guard stat(url.path, &st) == 0 else { return nil }
        #if canImport(Darwin)
        let t = st.st_mtimespec
        #else
        let t = st.st_mtim
        #endif
        return "\(st.st_size) bytes, modified \(t.tv_sec).\(String(format: "%09ld", t.tv_nsec))"
    }

    /// The summaries of a file processed before, when every output is there and newer than it,
    /// the file is the one read then (`inputSignature`) and every image of it has its summary,
    /// no image of it is still marked as being written, and it was made with this run's model,
    /// threshold and (when given) --pixel-size: a re-run with other settings redoes the file
    /// rather than report old results under new settings.
    public func previousResults(for url: URL) -> [ImageSummary]? {
        namesLock.lock(); defer { namesLock.unlock() }
        guard !settings.overwrite, !claimedInputs.contains(url.path),
              let inputDate = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.modificationDate] as? Date else { return nil }
        let stem = url.deletingPathExtension().lastPathComponent
        let candidates = outputNames(forStem: stem)
        let summaries = BatchSegmentation.summaryFiles(candidates, stem: stem).sorted()
        // An image of the file still marked as being written (the mark holds the input's path):
        // a run was killed before finishing the file (a stack part-way, or between an image's
        // summary and its mark's removal).
        let marked = candidates.contains { name in
            (name == BatchSegmentation.inProgressMarker(stem) || (name.hasPrefix(".\(stem)_") && name.hasSuffix(".writing")))
                && (try? Data(contentsOf: settings.outputDir.appendingPathComponent(name))) == Data(url.path.utf8)
        }
        guard !marked else { return nil }
        var out: [ImageSummary] = []
        for file in summaries {
            let u = settings.outputDir.appendingPathComponent(file)
            guard let data = try? Data(contentsOf: u), let s = try? JSONDecoder().decode(ImageSummary.self, from: data),
                  s.input == url.path else { continue }
            // --pixel-size as before: the same value, or none both times.
            let byOption = s.pixelSizeSource == PixelSizeSource.option.rawValue
            // (A summary without `particles_cut` sized cut particles too: redone.) The same model
            // by another name (`--model Models/default.safetensors` for the default) is the same
            // when its weights' digest, in `segmentationSettings`, is.
            // --default-pixel-size as before for an image without its own: the same value, or none.
            let byFallback = s.pixelSizeSource == PixelSizeSource.fallback.rawValue
            let uncalibrated = byFallback || s.pixelSizeSource == PixelSizeSource.none.rawValue
            guard s.model == modelName || modelDigest != nil, s.threshold == segmenter.threshold, s.segmentation == segmentationSettings,
                  s.particlesCut != nil,
                  segmenter.options.pixelSizeOverride.map({ byOption && s.pixelSizeNm == $0 }) ?? !byOption,
                  !uncalibrated || segmenter.options.pixelSizeOverride != nil
                    || (byFallback ? segmenter.options.fallbackPixelSize == s.pixelSizeNm : segmenter.options.fallbackPixelSize == nil)
            else { return nil }
            // A particle table with other columns (an older version's) is redone, so that the
            // run's particles.csv has one header for every row.
            let table = settings.outputDir.appendingPathComponent("\(s.image)_particles.csv")
            guard let text = try? String(contentsOf: table, encoding: .utf8),
                  text.prefix(while: { $0 != "\n" }) == Particle.csvHeader.joined(separator: ",") else { return nil }
            let all = ImageOutputs.files(for: s.image, probability: settings.probabilityFormat)
            let fresh = all.allSatisfy { name in
                let d = (try? FileManager.default.attributesOfItem(atPath: settings.outputDir.appendingPathComponent(name).path))?[.modificationDate] as? Date
                return d.map { $0 >= inputDate } ?? false
            }
            guard fresh else { return nil }
            out.append(s)
        }
        // The same file (size and time), and a summary for each of its images, no more, no less.
        guard let count = out.first?.imagesInInput, let signature = BatchSegmentation.inputSignature(url),
              out.allSatisfy({ $0.inputSignature == signature && $0.imagesInInput == count }),
              out.map(\.image).sorted() == BatchSegmentation.names(for: url, count: count).sorted() else { return nil }
        guard out.allSatisfy({ usedNames[nameKey($0.image)] == nil }) else { return nil }
        for s in out { usedNames[nameKey(s.image)] = url.path }
        claimedInputs.insert(url.path)
        return out
    }

    /// Segments, measures and writes every image of one file. Every image is checked before
    /// anything is written, and a failure removes what this file wrote.
    /// `segmenter`: this file's (another memory budget), else the batch's.
    public func process(_ url: URL, pool: ThreadPool = .shared, segmenter: Segmenter? = nil) throws -> [ImageSummary] {
        let segmenter = segmenter ?? self.segmenter
        let start = DispatchTime.now().uptimeNanoseconds
        let readStart = start
        // Taken before the read: a file still being written then gets no signature (below), so a
        // later run redoes it rather than take its partial results for the finished file's.
        let signatureBefore = BatchSegmentation.inputSignature(url)
        let micrographs = try open(url)
        let frames = BatchSegmentation.images(of: micrographs)
        guard !frames.isEmpty else { throw MicrographError(url: url, reason: "holds no image") }
        for (m, _) in frames where m.width < 64 || m.height < 64 {
            throw MicrographError(url: url, reason: "image is \(m.width)×\(m.height) pixels; both sides must be at least 64")
        }
        try BatchSegmentation.checkMeasurable(micrographs, file: url)
        let readSeconds = Double(DispatchTime.now().uptimeNanoseconds - readStart) / 1e9
        let names = BatchSegmentation.names(for: url, count: frames.count)
        // Each image must fit --memory with its full-size arrays and at least the smallest tile.
        var tileSizes: [Int] = []
        let fileBytes = micrographs.reduce(0) { $0 + $1.data.count }
        for (m, _) in frames {
            // At the model's scale too (`Segmenter.sizeProblem`).
            let (size, _) = try segmenter.pixelSize(of: m, file: url.path)
            if let problem = segmenter.sizeProblem(width: m.width, height: m.height, pixelSizeNm: size) {
                throw MicrographError(url: url, reason: problem)
            }
            switch segmenter.memoryPlan(width: m.width, height: m.height, pixelSizeNm: size,
                                        fileBytes: fileBytes) {
            case .success(let plan): tileSizes.append(plan.tileSize)
            case .failure(let shortfall):
                throw ImageExceedsMemory(MicrographError(url: url, reason: segmenter.refusal(width: m.width, height: m.height, pixelSizeNm: size,
                                                                                              shortfall, budget: "--memory")))
            }
        }
        try checkOutputs(names, for: url)
        // Said when --pixel-size differs by more than 2 % from the file's own, along either axis
        // (non-square pixels are the case it is most needed for).
        if let used = segmenter.options.pixelSizeOverride, let own = micrographs.first?.pixelSize,
           let farther = [own.x, own.y].max(by: { abs(used / $0 - 1) < abs(used / $1 - 1) }), abs(used / farther - 1) > 0.02 {
            calibrationReplaced?(url, farther, used)
        }
        let signature = BatchSegmentation.inputSignature(url) == signatureBefore ? signatureBefore : nil
        try claim(names, for: url)
        var summaries: [ImageSummary] = []
        var done: [String] = []
        do {
            // Marks every image's outputs as this run's until its summary says they are complete:
            // a run killed meanwhile leaves the marks, and the next one then redoes the file
            // (`previousResults`) and knows the outputs it finds are segment's (`checkOutputs`).
            for name in names {
                do {
                    try writeAtomically(Array(url.path.utf8), to: settings.outputDir.appendingPathComponent(BatchSegmentation.inProgressMarker(name)))
                } catch let e as MicrographError {
                    throw MicrographError(url: settings.outputDir, reason: e.reason)  // the folder, not the hidden mark's name
                }
            }
            for (index, (name, (m, frame))) in zip(names, frames).enumerated() {
                let t0 = DispatchTime.now().uptimeNanoseconds
                var raw = try FloatImage(m, frame: frame, parallel: pool.parallel)
                let (size, source) = try segmenter.pixelSize(of: m, file: url.path)
                // An FEI/Thermo SEM TIFF's information bar (rows below the scan) holds text and a
                // scale bar, not specimen: no particle there, and one cut by it touches the border.
                let specimenHeight = m.metadata.extra["fei_databar_rows"].flatMap(Int.init).flatMap { bar in
                    bar > 0 && bar < raw.height ? raw.height - bar : nil
                }
                let result = segmenter.segment(raw, pixelSizeNm: size, source: source, tileSize: tileSizes[index],
                                               specimenRows: specimenHeight, pool: pool)
                // Measuring and writing run on threads of their own: the pool's workers sleep.
                pool.rest()
                // The overlay shows the padding and NaN pixels flat, at the median of the others.
                if let shown = BinaryMask.union(result.nonFinite, result.padding) { raw.fill(shown, with: result.outsideValue) }
                for note in result.notes { imageNote?(url, name, note) }
                // The area fractions are of the pixels that show specimen; particles beside the
                // padding (or NaN pixels not enclosed by a particle) or the bar are cut there.
                let cut = result.cut
                let specimenPixels = raw.width * raw.height - result.outsidePixels
                let t1 = DispatchTime.now().uptimeNanoseconds
                var timings = Dictionary(uniqueKeysWithValues: result.timings)
                timings["read"] = readSeconds / Double(frames.count)
                done.append(name)
                let (_, summary) = try ImageOutputs.write(
                    name: name, into: settings.outputDir, raw: raw, result: result, probability: settings.probabilityFormat,
                    measure: { parallel, labelled in
                        let smallest = ParticleMeasurement.minimumAreas(pixelSizeNm: size, nm2: settings.minimumAreaNm2,
                                                                        uncalibratedPx: settings.minimumAreaPx)
                        return ParticleMeasurement(mask: result.mask, probability: result.probability.pixels, pixelSizeNm: size,
                                            minimumAreaNm2: smallest.nm2, minimumAreaPx: smallest.px,
                                            splitTouching: settings.splitTouching, specimenHeight: specimenHeight, outside: cut,
                                            parallel: parallel, labelled: labelled)
                    },
                    summarise: { measurement, seconds, maskPixels in
                        // The summary written with the outputs carries the time up to writing it.
                        let now = DispatchTime.now().uptimeNanoseconds
                        timings.merge(seconds) { $1 }
                        // Measuring and the writes run side by side (`ImageOutputs.write`): their
                        // wall time together, from the segmentation's end to this summary.
                        timings["measure_and_write"] = Double(now - t1) / 1e9
                        var notes = result.notes
                        let area = measurement.particles.reduce(0) { $0 + $1.areaPx }
                        if let note = Segmenter.coverageNote(Double(area) / Double(max(1, specimenPixels))) {
                            notes.append(note)
                            self.imageNote?(url, name, note)
                        }
                        return ImageSummary(image: name, input: url.path, width: m.width, height: m.height,
                                            particles: measurement.particles, maskPixels: maskPixels,
                                            specimenPixels: specimenPixels,
                                            model: self.modelName,
                                            threshold: result.threshold, pixelSizeNm: size, pixelSizeSource: source.rawValue,
                                            scale: result.scale, seconds: Double(now - t0) / 1e9 + readSeconds / Double(frames.count),
                                            timings: timings, segmentation: self.segmentationSettings, notes: notes,
                                            inputSignature: signature, imagesInInput: frames.count)
                    })
                summaries.append(summary)
                ImageOutputs.removeOutputFile(settings.outputDir.appendingPathComponent(BatchSegmentation.inProgressMarker(name)))
            }
        } catch {
            for name in done {
                for f in ImageOutputs.files(for: name, probability: settings.probabilityFormat) {
                    ImageOutputs.removeOutputFile(settings.outputDir.appendingPathComponent(f))
                }
            }
            for name in names { ImageOutputs.removeOutputFile(settings.outputDir.appendingPathComponent(BatchSegmentation.inProgressMarker(name))) }
            throw error
        }
        removeStaleImages(of: url, keeping: Set(names))
        return summaries
    }

    /// Removes the outputs of images an earlier run made from this input that it no longer
    /// holds (a stack of 3 frames replaced by one of 2: `x_2`'s files), found by their summaries
    /// naming the input; they would otherwise make the file look unfinished to every re-run.
    func removeStaleImages(of url: URL, keeping names: Set<String>) {
        let stem = url.deletingPathExtension().lastPathComponent
        let candidates: [String] = { namesLock.lock(); defer { namesLock.unlock() }; return outputNames(forStem: stem) }()
        var stale: Set<String> = []
        for file in BatchSegmentation.summaryFiles(candidates, stem: stem) {
            let name = String(file.dropLast(".summary.json".count))
            guard !names.contains(name),
                  let data = try? Data(contentsOf: settings.outputDir.appendingPathComponent(file)),
                  let s = try? JSONDecoder().decode(ImageSummary.self, from: data), s.input == url.path else { continue }
            stale.insert(name)
        }
        // And images a killed run left marked (the mark holds the input's path), summary or not.
        for file in candidates where file.hasSuffix(".writing") && file.hasPrefix(".") {
            let name = String(file.dropFirst().dropLast(".writing".count))
            guard name == stem || name.hasPrefix("\(stem)_"), !names.contains(name),
                  (try? Data(contentsOf: settings.outputDir.appendingPathComponent(file))) == Data(url.path.utf8) else { continue }
            stale.insert(name)
        }
        for name in stale {
            let maps = ImageOutputs.ProbabilityFormat.allCases.filter { $0 != .none }.map { "\(name)_prob.\($0.rawValue)" }
            for f in Set(ImageOutputs.files(for: name, probability: .none) + maps + [BatchSegmentation.inProgressMarker(name)]) {
                ImageOutputs.removeOutputFile(settings.outputDir.appendingPathComponent(f))
            }
        }
    }

    /// A path with symbolic links resolved, as inputs and outputs are compared.
    static func resolved(_ url: URL) -> String { url.standardizedFileURL.resolvingSymlinksInPath().path }

    /// Refuses a file whose outputs would replace one of the run's inputs (`x.npy` beside an
    /// input `x_mask.png`, written into the same folder) or a folder; and, segmented into its own
    /// folder, a file beside which an output's name is already taken by something no earlier
    /// segment run wrote (no `NAME.summary.json`, nor the mark of a run killed while writing
    /// them): a labelled data folder's `x_mask.png` is the truth a model is trained or judged on,
    /// never to be replaced by a prediction.
    func checkOutputs(_ names: [String], for url: URL) throws {
        let inputs = inputPaths.union([BatchSegmentation.resolved(url)])
        let ownFolder = BatchSegmentation.resolved(url.deletingLastPathComponent()) == BatchSegmentation.resolved(settings.outputDir)
        for name in names {
            for f in ImageOutputs.files(for: name, probability: settings.probabilityFormat) {
                let out = settings.outputDir.appendingPathComponent(f)
                if inputs.contains(BatchSegmentation.resolved(out)) || FileIdentity(out).map(inputIdentities.contains) == true {
                    throw MicrographError(url: url, reason: "its output \(f) would replace an input of this run (\(out.path)); segment it into another folder")
                }
                var isDir: ObjCBool = false
                if FileManager.default.fileExists(atPath: out.path, isDirectory: &isDir), isDir.boolValue {
                    throw MicrographError(url: url, reason: "its output \(out.path) is a folder; move it or segment into another folder")
                }
            }
            let summary = settings.outputDir.appendingPathComponent("\(name).summary.json")
            let marker = settings.outputDir.appendingPathComponent(BatchSegmentation.inProgressMarker(name))
            if ownFolder && !FileManager.default.fileExists(atPath: summary.path) && !FileManager.default.fileExists(atPath: marker.path) {
                for f in ImageOutputs.files(for: name, probability: settings.probabilityFormat)
                where FileManager.default.fileExists(atPath: settings.outputDir.appendingPathComponent(f).path) {
                    throw MicrographError(url: url, reason: "\(f) beside it was not written by segment (no \(name).summary.json): it may be a label mask; segment into another folder (or, if a killed run of an earlier version left it, remove it)")
                }
            }
        }
    }

    /// The hidden file that marks image `name`'s outputs as being written (removed once its
    /// summary is); it holds the input file's path.
    package static func inProgressMarker(_ name: String) -> String { ".\(name).writing" }

    /// An input whose output name `name` an earlier input (`earlier`) has.
    static func nameClash(_ url: URL, name: String, earlier: String) -> MicrographError {
        MicrographError(url: url, reason: "its outputs would overwrite those of an earlier input named \(name) (\(earlier)); segment it into another folder")
    }

    /// Reserves output names for a file, or names the earlier input that has them.
    func claim(_ names: [String], for url: URL) throws {
        namesLock.lock(); defer { namesLock.unlock() }
        for name in names {
            if let earlier = usedNames[nameKey(name)], earlier != url.path {
                throw BatchSegmentation.nameClash(url, name: name, earlier: earlier)
            }
        }
        for name in names { usedNames[nameKey(name)] = url.path }
        claimedInputs.insert(url.path)
    }
}

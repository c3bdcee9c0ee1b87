import Foundation
import MicrographIO
import XCTest

final class EMDReaderTests: XCTestCase {
    func testCorpusConformance() throws {
        try DMSEREMDCorpus.assertConformance(formats: ["emd-velox", "emd-berkeley"], read: EMDReader.read)
    }

    func testIsHDF5() {
        let sig: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]
        XCTAssertTrue(EMDReader.isHDF5(sig + [0, 0]))
        XCTAssertTrue(EMDReader.isHDF5([UInt8](repeating: 0, count: 512) + sig))
        XCTAssertTrue(EMDReader.isHDF5([UInt8](repeating: 0, count: 2048) + sig))
        XCTAssertFalse(EMDReader.isHDF5([UInt8](repeating: 0, count: 100) + sig))
        XCTAssertFalse(EMDReader.isHDF5(Array(sig.prefix(7))))
    }

    func testFuzzEMD() throws {
        let long = ProcessInfo.processInfo.environment["NANOFIND_LONG_TESTS"] == "1"
        let seeds = DMSEREMDFuzz.corpusSeeds(folder: "emd", extensions: ["emd"], maxBytes: 200_000)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nanofind-emd-fuzz-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("mutant.emd")
        DMSEREMDFuzz.run("EMD corpus", seeds: seeds, count: long ? 2_000 : 200, rngSeed: 0xE3D, parse: { bytes in
            try Data(bytes).write(to: path)
            return try EMDReader.read(path)
        })
    }
}

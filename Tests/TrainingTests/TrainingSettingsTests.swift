import Foundation
import Training
import XCTest

/// Training settings as checkpoints record them.
final class TrainingSettingsTests: XCTestCase {
    /// Every setting survives a checkpoint; one written before `crops` existed (no such key)
    /// resumes with crops placed as they were then (`wrap`).
    func testSettingsRoundTripAndOlderCheckpointsDecode() throws {
        var s = TrainingSettings()
        s.epochs = 7; s.tile = 256; s.learningRate = 1e-3; s.schedule = .cosine; s.augment = .robust; s.crops = .inside
        s.seed = 42; s.patience = 5; s.widths = [2, 4]
        let data = try JSONEncoder().encode(s)
        XCTAssertEqual(try JSONDecoder().decode(TrainingSettings.self, from: data), s)
        var object = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        XCTAssertNotNil(object.removeValue(forKey: "crops"))
        let older = try JSONDecoder().decode(TrainingSettings.self, from: JSONSerialization.data(withJSONObject: object))
        var expected = s
        expected.crops = .wrap
        XCTAssertEqual(older, expected)
    }
}

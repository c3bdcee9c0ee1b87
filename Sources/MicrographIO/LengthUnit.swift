import Foundation

/// Length units that microscope files store calibrations in.
enum LengthUnit {
    /// How many nanometres one `unit` is; nil for reciprocal, empty or unknown units.
    static func nanometres(per unit: String) -> Double? {
        switch unit.trimmingCharacters(in: .whitespaces) {
        case "m": return 1e9
        case "mm": return 1e6
        case "µm", "μm", "um", "micron", "microns": return 1e3
        case "nm", "n_m": return 1
        case "Å", "A", "Angstrom", "angstrom": return 0.1
        case "pm": return 1e-3
        default: return nil
        }
    }
}
